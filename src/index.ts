/**
 * sequelize-db-mutex: database-backed mutex locks for Sequelize v6.
 * This file is the whole public surface; everything else is internal.
 */
export { initDbMutex, getDefaultDbMutex } from './default-mutex';
export { DbMutex } from './db-mutex';
export type {
  DbMutexEvents,
  DbMutexDegradedEvent,
  ListOptions,
  ForceReleaseOptions,
  ForceReleaseResult,
  AuditOptions,
  EventsOptions,
  HistoryOptions,
  PurgeHistoryOptions,
} from './db-mutex';
export { summarizeHistory, HISTORY_OUTCOMES } from './history';
export type { DbMutexHistoryEntry, DbMutexHistoryOutcome, DbMutexHistorySummary } from './history';
export { Leadership } from './leadership';
export type { LeadOptions, LeadershipEvents } from './leadership';
export { withDbMutex, dbMutex } from './with-db-mutex';
export type { WithDbMutexOptions, DbMutexWrapperOptions } from './with-db-mutex';
export { withDbSemaphore, dbSemaphore } from './with-db-semaphore';
export type { WithDbSemaphoreOptions, DbSemaphoreWrapperOptions } from './with-db-semaphore';
export type { DbMutexSemaphorePermit, SemaphoreAcquireOptions } from './semaphore';
export type { SemaphoreEntry, SemaphoresOptions } from './operator';
export { MAX_SEMAPHORE_ID_LENGTH, MAX_SEMAPHORE_LIMIT } from './semaphore';
export type { DbMutexHeldLock } from './lease';
export {
  DbMutexError,
  DbMutexTimeoutError,
  DbMutexLostError,
  DbMutexNotHeldError,
  DbMutexUnsupportedDialectError,
  DbMutexUnsupportedServerError,
  DbMutexDemotedError,
  DbMutexMissingPeerError,
} from './errors';
export type { DbMutexErrorCode, DbMutexLostReason, DbMutexDemotedReason } from './errors';
export { DbMutexLock, DbMutexEvent, DbMutexHistory, createSchema, dropSchema, createHistorySchema, dropHistorySchema, DEFAULT_SCHEMA_NAMES } from './schema';
export type { SchemaNames } from './schema';
export type { LockRow, EventRow } from './dialects/types';
export { SUPPORTED_DIALECTS } from './dialects';
export type { DbMutexOptions, AcquireOptions } from './options';
export { MAX_LOCK_ID_LENGTH } from './options';
export { dbMutexHandler } from './express-handler';
export type { DbMutexHandlerOptions, DbMutexHeldInfo, DbMutexHeldBody } from './express-handler';
export { createDbMutexAdminRouter } from './admin/router';
export type { DbMutexAdminRouterOptions } from './admin/router';
export { createDbMutexMetrics } from './metrics';
export type { DbMutexMetrics, DbMutexMetricsOptions, DbMutexMetricsRegistry } from './metrics';
