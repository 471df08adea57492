/** Where the demo keeps its state. Both examples/demo and its build dist-examples/demo sit two levels below the repository root. */
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
/**
 * Git-ignored. Holds the running demo's pid file and the embedded PostgreSQL cluster (data kept between
 * runs), except as root in a checkout the "postgres" user cannot reach: then the cluster is in a folder
 * of its own under /var/tmp (scripts/embedded-pg.js decides, and the start-up line says where).
 */
export const EMBEDDED_DIR = path.join(REPO_ROOT, '.embedded-pg');
export const INSTANCE_FILE = path.join(EMBEDDED_DIR, 'demo.pid');
/** The embedded server's port when it is free (an unusual one, so it does not clash with a local PostgreSQL). */
export const PREFERRED_PG_PORT = 54329;
