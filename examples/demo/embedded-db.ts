/**
 * Child process that runs the demo's embedded PostgreSQL (forked by database.ts with `detached: true`).
 *
 * Why a process of its own, in its own process group: Ctrl-C sends SIGINT to every process of the
 * terminal's foreground group, and a PostgreSQL server in that group would shut down at once, before the
 * workers had released their locks. Here the server stops only when the supervisor says so (last, after
 * the workers), or when the supervisor is gone (the IPC channel closes, even after a SIGKILL), so it is
 * never left running on its own.
 */
import fs from 'node:fs';
import path from 'node:path';
import { embeddedPg, planDemoCluster, type DbHostMessage, type EmbeddedPlan, type SupervisorMessage } from './database';
import { errorMessage } from './log';
import { EMBEDDED_DIR, PREFERRED_PG_PORT } from './paths';
import { isPortFree } from './ports';
import { isAlive } from './single-instance';

/** Resolves once the message is handed to the IPC channel (or at once when there is none). */
function send(message: DbHostMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });
}

/**
 * A server left running on our folder by an earlier demo that was killed together with this helper
 * (kill -9 of the whole group). The pid file alone is not proof (pids are reused), so it must also be
 * a process whose command line names our data folder (Linux /proc; elsewhere PostgreSQL itself refuses
 * to start and says why).
 */
function leftoverServerPid(dataDir: string): number | null {
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
  } catch {
    return null;
  }
  if (!isAlive(pid)) return null;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.some((arg) => path.resolve(arg) === dataDir) ? pid : null;
  } catch {
    return null;
  }
}

async function stopLeftoverServer(dataDir: string): Promise<void> {
  const pid = leftoverServerPid(dataDir);
  if (pid === null) return;
  console.log(`[postgres] a server from an earlier run is still running on ${dataDir} (pid ${pid}); stopping it first`);
  process.kill(pid, 'SIGINT'); // PostgreSQL's "fast shutdown"
  for (let waited = 0; isAlive(pid); waited += 100) {
    if (waited > 20_000) throw new Error(`the PostgreSQL server left by an earlier run (pid ${pid}) does not stop; stop it by hand`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Known once planned: the folder to name if the cluster turns out to be damaged. */
let plan: EmbeddedPlan | null = null;

async function main(): Promise<void> {
  plan = await planDemoCluster();
  await stopLeftoverServer(plan.dataDir);
  const port = (await isPortFree(PREFERRED_PG_PORT)) ? PREFERRED_PG_PORT : await embeddedPg.freePort();
  const pg = await embeddedPg.startEmbeddedPostgres({ dir: EMBEDDED_DIR, port, persistent: true });

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= pg
      .stop()
      .catch((error: unknown) => console.error(`[postgres] stop failed: ${errorMessage(error)}`))
      .then(() => process.exit(0));
    return stopping;
  };
  process.on('message', (message: SupervisorMessage) => {
    if (message?.type === 'stop') void stop();
  });
  // The supervisor is gone (exited, crashed or was SIGKILLed): nobody will ever ask us to stop.
  process.on('disconnect', () => void stop());
  if (!process.connected) {
    await stop();
    return;
  }
  await send({ type: 'ready', url: pg.url, port: pg.port });
}

main().catch(async (error: unknown) => {
  await send({
    type: 'failed',
    message:
      `${errorMessage(error)}\nIf the folder is damaged, delete ${plan?.dir ?? EMBEDDED_DIR} (it holds only the demo's data) ` +
      'and start again, or use your own server: DATABASE_URL=postgres://… npm start',
  });
  process.exit(1);
});
