/**
 * The admin router's history routes: one lock's page (current holder, Release button, recent history,
 * summary and chart) and the same data as JSON. Both read the lock and its history in parallel; the
 * figures are computed from the entries shown, so the page and its JSON never disagree.
 */
import { DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT } from '../limits';
import { mutexOf, operatorOf, type AdminHandler } from './handlers';
import { lockHistoryJson, lockPage } from './history-format';
import { parseLimit, queryOf, single } from './input';
import { baseOf } from './links';
import { lockIdOf } from './middleware';
import { sendJson, sendPage } from './respond';

/** `GET /locks/:lockId`: the lock's page, with its last DEFAULT_HISTORY_LIMIT acquisitions. */
export const lockHistoryPage: AdminHandler = async (ctx, req, res) => {
  const lockId = lockIdOf(res);
  const mutex = mutexOf(ctx);
  const limit = DEFAULT_HISTORY_LIMIT;
  const [row, entries] = await Promise.all([mutex.inspect(lockId), mutex.history({ lockId, limit })]);
  const operator = await operatorOf(ctx, req);
  const model = lockPage({
    base: baseOf(req),
    lockId,
    row,
    entries,
    limit,
    historyEnabled: mutex.options.history,
    operator,
    readOnly: ctx.config.readOnly,
  });
  sendPage(res, 200, 'lock', model);
};

/** `GET /api/locks/:lockId/history?limit=N`: `{ lockId, current, summary, entries }`, newest entry first. */
export const lockHistoryApi: AdminHandler = async (ctx, req, res) => {
  const lockId = lockIdOf(res);
  const limit = parseLimit(single(queryOf(req.url), 'limit'), DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT);
  const mutex = mutexOf(ctx);
  const [row, entries] = await Promise.all([mutex.inspect(lockId), mutex.history({ lockId, limit })]);
  sendJson(res, 200, lockHistoryJson(lockId, row, entries));
};
