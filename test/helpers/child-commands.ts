/**
 * The request/answer side of the controller fixtures (pg-server.js, mariadb-server.js,
 * sqlite-writer.js): "<command> <id> [argument]" on the child's stdin, answered by one
 * {type: "done" | "failed", id, ...} line.
 */
import type { Child, ChildMessage } from './children';

const nextIds = new WeakMap<Child, number>();

/** Sends one command and resolves with its "done" answer; a "failed" answer rejects. */
export async function ask(child: Child, command: string, argument = '', timeout = 120_000): Promise<ChildMessage> {
  const id = String(nextIds.get(child) ?? 1);
  nextIds.set(child, Number(id) + 1);
  child.tell(`${command} ${id}${argument ? ` ${argument}` : ''}`);
  const reply = await child.waitFor((m) => (m.type === 'done' || m.type === 'failed') && m.id === id, timeout, `an answer to "${command}"`);
  if (reply.type === 'failed') throw new Error(`${child.name}: ${command} failed: ${JSON.stringify(reply.error)}`);
  return reply;
}
