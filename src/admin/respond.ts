/** How the admin router answers: HTML pages, JSON, and errors in whichever of the two the path speaks. */
import type { Request, Response } from 'express';
import { printableJson } from '../printable';
import type { AdminHttpError } from './http-error';
import { baseOf } from './links';
import { renderPage, type TemplateName } from './render';
import { errorPage, type PageModel } from './view-model';

export function sendPage(res: Response, status: number, name: Exclude<TemplateName, 'layout'>, page: PageModel): void {
  sendHtml(res, status, renderPage(name, page.layout, page.data));
}

function sendHtml(res: Response, status: number, html: string): void {
  res.status(status).type('html').send(html);
}

/**
 * JSON answers carry invisible characters as \u escapes (parsed back exactly), so ids read in curl's
 * output or a browser tab cannot disguise themselves. Serialized here, not by res.json, which would
 * also apply the host app's `json replacer` and `json spaces` settings.
 */
export function sendJson(res: Response, status: number, body: object): void {
  res.status(status).type('json').send(printableJson(body));
}

function wantsJson(req: Request): boolean {
  return req.path === '/api' || req.path.startsWith('/api/');
}

export function sendError(req: Request, res: Response, error: AdminHttpError): void {
  if (wantsJson(req)) {
    sendJson(res, error.status, { error: { code: error.code, message: error.message, ...error.details } });
    return;
  }
  let html: string;
  try {
    const page = errorPage(baseOf(req), error);
    html = renderPage('error', page.layout, page.data);
  } catch {
    res.status(error.status).type('text').send(`${error.status} ${error.code}: ${error.message}`);
    return;
  }
  sendHtml(res, error.status, html);
}
