#!/usr/bin/env node
/** Entry point of the `db-mutex` bin (dist/cli/main.js). All logic is in run.ts. */
import { runCli } from './run';

// `db-mutex list | head` closes the pipe early: that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

void runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
}).then((code) => {
  process.exitCode = code;
  // Everything was closed; if a driver still holds a socket (a half-open connection attempt), do not
  // keep the operator's shell waiting for it. unref(): a clean run exits before this fires.
  setTimeout(() => process.exit(code), 2000).unref();
});
