/**
 * The admin router's semaphore routes: a counting semaphore as one entry (used / limit) with its
 * holders. Each permit is released like a lock (its row key and token), through the lock routes'
 * confirm page, form and API, audited the same way.
 */
import { parseFilter, queryOf, single } from './input';
import { baseOf } from './links';
import { mutexOf, operatorOf, type AdminHandler } from './handlers';
import { sendJson, sendPage } from './respond';
import { semaphoreJson, semaphoresPage } from './semaphore-format';

/** Permits one page or API answer shows at most (all semaphores together). */
const MAX_PERMITS = 1000;

/** `GET /semaphores`: every semaphore with held permits, its holders and their Release buttons. */
export const semaphores: AdminHandler = async (ctx, req, res) => {
  const entries = await mutexOf(ctx).semaphores({ limit: MAX_PERMITS });
  const operator = await operatorOf(ctx, req);
  sendPage(res, 200, 'semaphores', semaphoresPage({ base: baseOf(req), entries, operator, readOnly: ctx.config.readOnly }));
};

/** `GET /api/semaphores?filter=TEXT`: the same as JSON. */
export const listSemaphores: AdminHandler = async (ctx, req, res) => {
  const filter = parseFilter(single(queryOf(req.url), 'filter'));
  const entries = await mutexOf(ctx).semaphores({ filter, limit: MAX_PERMITS });
  sendJson(res, 200, { semaphores: entries.map(semaphoreJson) });
};
