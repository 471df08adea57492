/**
 * The one source of truth for the schema. The sequelize-cli migration, `mutex.sync()` and a host
 * app's `sequelize.sync()` all build the tables from these definitions, so they cannot drift
 * (test/core/schema.test.ts compares the migration's result with sync's, column by column).
 */
import { DataTypes, Model, type ModelAttributes, type ModelStatic, type QueryInterface, type Sequelize } from 'sequelize';
import { dialectFor, type Dialect } from './dialects';
import { defaultHistoryTableName, DEFAULT_EVENTS_TABLE_NAME, DEFAULT_TABLE_NAME } from './limits';

/** The DbMutexLock model: one row per lock currently held (or expired and not yet taken over). */
export class DbMutexLock extends Model {
  declare lockId: string;
  declare ownerToken: string;
  declare fencingToken: string;
  declare holder: string;
  declare hostname: string;
  declare pid: number;
  declare acquiredAt: Date;
  declare expiresAt: Date | null;
  declare deadlineAt: Date | null;
  declare heartbeatAt: Date;
  declare leaseSeconds: number | null;
  declare kind: string;
  declare semaphoreId: string | null;
  declare permit: number | null;
  declare permitLimit: number | null;
}

/** The DbMutexEvent model: the audit trail of force-releases and purges. */
export class DbMutexEvent extends Model {
  declare id: string;
  declare action: string;
  declare lockId: string;
  declare fencingToken: string;
  declare holder: string;
  declare hostname: string;
  declare pid: number;
  declare acquiredAt: Date;
  declare ageSeconds: number;
  declare operator: string;
  declare reason: string | null;
  declare createdAt: Date;
}

/** The DbMutexHistory model: one row per acquisition that ended (see src/history.ts). */
export class DbMutexHistory extends Model {
  declare lockId: string;
  declare fencingToken: string;
  declare holder: string;
  declare hostname: string;
  declare pid: number;
  declare acquiredAt: Date;
  declare endedAt: Date;
  declare outcome: string;
  declare detail: string | null;
}

export interface SchemaNames {
  tableName: string;
  eventsTableName: string;
  /** Default: `<tableName>_history`. */
  historyTableName: string;
}

export const DEFAULT_SCHEMA_NAMES: Readonly<SchemaNames> = Object.freeze({
  tableName: DEFAULT_TABLE_NAME,
  eventsTableName: DEFAULT_EVENTS_TABLE_NAME,
  historyTableName: defaultHistoryTableName(DEFAULT_TABLE_NAME),
});

/** Who held an acquisition, where, and since when: the same columns in the lock, audit and history tables. */
function acquisitionAttributes(): ModelAttributes {
  return {
    holder: { type: DataTypes.STRING(255), allowNull: false, field: 'holder' },
    hostname: { type: DataTypes.STRING(255), allowNull: false, field: 'hostname' },
    pid: { type: DataTypes.INTEGER, allowNull: false, field: 'pid' },
    acquiredAt: { type: DataTypes.DATE(6), allowNull: false, field: 'acquired_at' },
  };
}

export function lockAttributes(): ModelAttributes {
  return {
    // The primary key is the lock id itself: uniqueness is what makes the acquire statement atomic.
    lockId: { type: DataTypes.STRING(255), primaryKey: true, allowNull: false, field: 'lock_id' },
    ownerToken: { type: DataTypes.UUID, allowNull: false, field: 'owner_token' },
    fencingToken: { type: DataTypes.BIGINT, allowNull: false, field: 'fencing_token' },
    ...acquisitionAttributes(),
    // NULL = never expires (ttlSeconds null and no heartbeat).
    expiresAt: { type: DataTypes.DATE(6), allowNull: true, field: 'expires_at' },
    // Hard cap from ttlSeconds; the heartbeat never renews past it. NULL = no cap.
    deadlineAt: { type: DataTypes.DATE(6), allowNull: true, field: 'deadline_at' },
    heartbeatAt: { type: DataTypes.DATE(6), allowNull: false, field: 'heartbeat_at' },
    // NULL = heartbeat off for this acquisition.
    leaseSeconds: { type: DataTypes.DOUBLE, allowNull: true, field: 'lease_seconds' },
    // Added by the second migration (kept last, so a table upgraded by adding columns and a table
    // created fresh list their columns in the same order).
    ...kindAttributes(),
  };
}

/**
 * What a row is: a lock (`lock`), one permit of a counting semaphore (`semaphore`, with its semaphore
 * id, permit number and the limit it was acquired with) or a leader election's lock (`election`).
 */
export const LOCK_KINDS = ['lock', 'semaphore', 'election'] as const;
export type LockKind = (typeof LOCK_KINDS)[number];

export function kindAttributes(): ModelAttributes {
  return {
    kind: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'lock', field: 'kind' },
    semaphoreId: { type: DataTypes.STRING(255), allowNull: true, field: 'semaphore_id' },
    permit: { type: DataTypes.INTEGER, allowNull: true, field: 'permit' },
    permitLimit: { type: DataTypes.INTEGER, allowNull: true, field: 'permit_limit' },
  };
}

export function eventAttributes(): ModelAttributes {
  return {
    id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true, allowNull: false, field: 'id' },
    action: { type: DataTypes.STRING(32), allowNull: false, field: 'action' },
    lockId: { type: DataTypes.STRING(255), allowNull: false, field: 'lock_id' },
    fencingToken: { type: DataTypes.BIGINT, allowNull: false, field: 'fencing_token' },
    ...acquisitionAttributes(),
    ageSeconds: { type: DataTypes.DOUBLE, allowNull: false, field: 'age_seconds' },
    operator: { type: DataTypes.STRING(255), allowNull: false, field: 'operator' },
    reason: { type: DataTypes.STRING(1000), allowNull: true, field: 'reason' },
    createdAt: { type: DataTypes.DATE(6), allowNull: false, field: 'created_at' },
  };
}

/**
 * One row per acquisition that ended. The key is (lock_id, fencing_token), which names one
 * acquisition: whoever records its end first wins and later writers of the same end (a release
 * after the holder already recorded the loss, say) insert nothing. A lock's page reads it through
 * the key's prefix, newest token first; pruning walks the ended_at index.
 */
export function historyAttributes(): ModelAttributes {
  return {
    lockId: { type: DataTypes.STRING(255), primaryKey: true, allowNull: false, field: 'lock_id' },
    fencingToken: { type: DataTypes.BIGINT, primaryKey: true, allowNull: false, field: 'fencing_token' },
    ...acquisitionAttributes(),
    endedAt: { type: DataTypes.DATE(6), allowNull: false, field: 'ended_at' },
    outcome: { type: DataTypes.STRING(16), allowNull: false, field: 'outcome' },
    detail: { type: DataTypes.STRING(255), allowNull: true, field: 'detail' },
  };
}

export function historyIndexes(names: SchemaNames) {
  return [{ name: `${names.historyTableName}_ended_idx`, fields: ['ended_at'] }];
}

/** Index names are derived from the table name so two DbMutex tables can live in one database. */
export function lockIndexes(names: SchemaNames) {
  // Oldest-first listing with keyset pagination (dashboard, CLI) walks this index.
  return [{ name: `${names.tableName}_acquired_idx`, fields: ['acquired_at', 'lock_id'] }, ...kindIndexes(names)];
}

/** A semaphore acquisition counts and checks the live permits of one semaphore id through this index. */
export function kindIndexes(names: SchemaNames) {
  return [{ name: `${names.tableName}_semaphore_idx`, fields: ['semaphore_id', 'permit'] }];
}

export function eventIndexes(names: SchemaNames) {
  return [{ name: `${names.eventsTableName}_lock_idx`, fields: ['lock_id', 'id'] }];
}

export interface DefinedModels {
  Lock: ModelStatic<DbMutexLock>;
  Event: ModelStatic<DbMutexEvent>;
  History: ModelStatic<DbMutexHistory>;
}

/**
 * Defines both models on the given Sequelize instance. Each DbMutex gets its own subclasses, so
 * several instances (several databases) can coexist; `instanceof DbMutexLock` holds for all.
 */
export function defineModels(sequelize: Sequelize, names: SchemaNames): DefinedModels {
  const dialect = dialectFor(sequelize);
  const Lock = class extends DbMutexLock {};
  Lock.init(lockAttributes(), {
    sequelize,
    modelName: 'DbMutexLock',
    tableName: names.tableName,
    timestamps: false,
    indexes: lockIndexes(names),
    ...dialect.tableOptions,
    hooks: {
      beforeSync: async () => {
        await dialect.prepareSchema?.(sequelize);
      },
      // A host app's sequelize.sync() runs this too, so it creates exactly what the migration creates.
      afterSync: async () => {
        // A table created by an earlier version lacks the kind columns; sync() adds them as the
        // second migration does, before the extras (which may refer to them).
        await upgradeSchema(sequelize.getQueryInterface(), names, { extras: false });
        for (const sql of extrasSql(dialect, names)) await sequelize.query(sql, { raw: true });
      },
    },
  });
  const Event = class extends DbMutexEvent {};
  Event.init(eventAttributes(), {
    sequelize,
    modelName: 'DbMutexEvent',
    tableName: names.eventsTableName,
    timestamps: false,
    indexes: eventIndexes(names),
    ...dialect.tableOptions,
  });
  const History = class extends DbMutexHistory {};
  History.init(historyAttributes(), {
    sequelize,
    modelName: 'DbMutexHistory',
    tableName: names.historyTableName,
    timestamps: false,
    indexes: historyIndexes(names),
    ...dialect.tableOptions,
  });
  return { Lock, Event, History };
}

/** What the migration's `up` does. */
export async function createSchema(queryInterface: QueryInterface, names: SchemaNames = DEFAULT_SCHEMA_NAMES): Promise<void> {
  const sequelize = queryInterface.sequelize;
  const dialect = dialectFor(sequelize);
  // Table options (MariaDB: character set, collation, row format) as the models pass them to sync().
  const tableOptions = { ...dialect.tableOptions };
  await dialect.prepareSchema?.(sequelize);
  await queryInterface.createTable(names.tableName, fieldAttributes(lockAttributes()), tableOptions);
  for (const index of lockIndexes(names)) await queryInterface.addIndex(names.tableName, index.fields, { name: index.name });
  for (const sql of extrasSql(dialect, names)) await sequelize.query(sql, { raw: true });
  await queryInterface.createTable(names.eventsTableName, fieldAttributes(eventAttributes()), tableOptions);
  for (const index of eventIndexes(names)) {
    await queryInterface.addIndex(names.eventsTableName, index.fields, { name: index.name });
  }
}

/**
 * What the second migration's `up` does (and `sync()` too): adds the kind columns and their index to a
 * lock table created before they existed, then (re)creates the database's extras. Idempotent: on a
 * table that has them (a fresh install) it only re-runs the extras.
 */
export async function upgradeSchema(
  queryInterface: QueryInterface,
  names: SchemaNames = DEFAULT_SCHEMA_NAMES,
  { extras = true }: { extras?: boolean } = {},
): Promise<void> {
  const sequelize = queryInterface.sequelize;
  const dialect = dialectFor(sequelize);
  await dialect.prepareSchema?.(sequelize);
  const existing = await queryInterface.describeTable(names.tableName);
  for (const [column, definition] of Object.entries(fieldAttributes(kindAttributes()))) {
    if (!(column in existing)) await queryInterface.addColumn(names.tableName, column, definition);
  }
  const indexes = (await queryInterface.showIndex(names.tableName)) as { name: string }[];
  for (const index of kindIndexes(names)) {
    if (!indexes.some((i) => i.name === index.name)) await queryInterface.addIndex(names.tableName, index.fields, { name: index.name });
  }
  if (extras) for (const sql of extrasSql(dialect, names)) await sequelize.query(sql, { raw: true });
}

/** What the second migration's `down` does: back to the first migration's lock table. */
export async function downgradeSchema(queryInterface: QueryInterface, names: SchemaNames = DEFAULT_SCHEMA_NAMES): Promise<void> {
  const sequelize = queryInterface.sequelize;
  const dialect = dialectFor(sequelize);
  for (const sql of dialect.dropKindExtrasSql?.(names) ?? []) await sequelize.query(sql, { raw: true });
  for (const index of kindIndexes(names)) await queryInterface.removeIndex(names.tableName, index.name);
  // Plain DROP COLUMN on every database (SQLite 3.35+ has it): Sequelize's SQLite removeColumn copies
  // the table, which would drop the fencing-counter triggers with it.
  for (const column of Object.keys(fieldAttributes(kindAttributes()))) {
    await sequelize.query(`ALTER TABLE ${queryInterface.quoteIdentifier(names.tableName)} DROP COLUMN ${queryInterface.quoteIdentifier(column)}`, {
      raw: true,
    });
  }
}

/**
 * What the third migration's `up` does: the history table (sync() creates it through the model).
 * Idempotent, so a database whose history table sync() already made migrates cleanly.
 */
export async function createHistorySchema(queryInterface: QueryInterface, names: SchemaNames = DEFAULT_SCHEMA_NAMES): Promise<void> {
  const sequelize = queryInterface.sequelize;
  const dialect = dialectFor(sequelize);
  await dialect.prepareSchema?.(sequelize);
  if (await queryInterface.tableExists(names.historyTableName)) return;
  await queryInterface.createTable(names.historyTableName, fieldAttributes(historyAttributes()), { ...dialect.tableOptions });
  for (const index of historyIndexes(names)) await queryInterface.addIndex(names.historyTableName, index.fields, { name: index.name });
}

/**
 * What the third migration's `down` does. Processes that run meanwhile keep their locks: a write to
 * the missing table turns their history off (see src/history.ts), never a lock operation.
 */
export async function dropHistorySchema(queryInterface: QueryInterface, names: SchemaNames = DEFAULT_SCHEMA_NAMES): Promise<void> {
  await queryInterface.dropTable(names.historyTableName);
}

/** Every extra of the schema: the first migration's, then those of the kind columns. */
function extrasSql(dialect: Dialect, names: SchemaNames): string[] {
  return [...dialect.schemaExtrasSql(names), ...(dialect.kindExtrasSql?.(names) ?? [])];
}

/** What the migration's `down` does. */
export async function dropSchema(queryInterface: QueryInterface, names: SchemaNames = DEFAULT_SCHEMA_NAMES): Promise<void> {
  const sequelize = queryInterface.sequelize;
  const dialect = dialectFor(sequelize);
  for (const sql of dialect.dropKindExtrasSql?.(names) ?? []) await sequelize.query(sql, { raw: true });
  await queryInterface.dropTable(names.historyTableName);
  await queryInterface.dropTable(names.eventsTableName);
  await queryInterface.dropTable(names.tableName);
  for (const sql of dialect.dropExtrasSql(names)) await sequelize.query(sql, { raw: true });
}

/** queryInterface.createTable wants column names as keys; the models use camelCase keys with `field`. */
function fieldAttributes(attributes: ModelAttributes): ModelAttributes {
  const out: ModelAttributes = {};
  for (const [, definition] of Object.entries(attributes)) {
    const { field, ...rest } = definition as { field: string };
    out[field] = rest as ModelAttributes[string];
  }
  return out;
}
