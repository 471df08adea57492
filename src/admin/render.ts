/**
 * The router's own templates and static files, read from the package's `views/` folder by absolute
 * path. Nothing here uses `res.render` or `express.static`, so the host app's `view engine`, `views`
 * and static settings neither matter nor change.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ejs from 'ejs';
import { printable, printableParts } from '../printable';

/** src/admin and dist/admin are both two levels below the package root, next to `views/`. */
export const VIEWS_DIR = path.join(__dirname, '..', '..', 'views');

export type TemplateName = 'layout' | 'dashboard' | 'semaphores' | 'lock' | 'confirm-release' | 'confirm-release-stale' | 'error';

const compiled = new Map<TemplateName, ejs.TemplateFunction>();

function template(name: TemplateName): ejs.TemplateFunction {
  let fn = compiled.get(name);
  if (!fn) {
    const filename = path.join(VIEWS_DIR, `${name}.ejs`);
    // Compiled once per process into our own map (not ejs's global cache, which the host may clear or share).
    fn = ejs.compile(readFileSync(filename, 'utf8'), { filename, strict: false });
    compiled.set(name, fn);
  }
  return fn;
}

export interface LayoutData {
  title: string;
  base: string;
  assets: AssetUrls;
  /** Seconds between automatic reloads of `refreshUrl`; 0 = off. */
  refreshSeconds: number;
  refreshUrl: string;
}

/**
 * HTML for free text shown as an element's content (`<%- show(lock.lockId) %>`): HTML-escaped, with
 * every invisible character as a marked, visible escape (see printable.ts). Attributes that a person
 * reads (title, aria-label) take `printable(text)` through `<%= %>` instead; attributes a form posts
 * back keep the exact text through `<%= %>` alone.
 */
function showHtml(text: string | null | undefined): string {
  return printableParts(text ?? '')
    .map((part) => {
      const escaped = ejs.escapeXML(part.text);
      if (part.codePoint === null) return escaped;
      const name = `U+${part.codePoint.toString(16).toUpperCase().padStart(4, '0')}`;
      return `<span class="esc" title="invisible character ${name}">${escaped}</span>`;
    })
    .join('');
}

/** What every template may call besides its data. */
const HELPERS = { show: showHtml, printable: (text: string | null | undefined) => printable(text ?? '') };

/** Renders a page template, then wraps it in the layout (head, header, static asset links). */
export function renderPage(name: Exclude<TemplateName, 'layout'>, layout: LayoutData, data: Record<string, unknown>): string {
  const body = template(name)({ ...HELPERS, ...data, base: layout.base });
  return template('layout')({ ...HELPERS, ...layout, body });
}

export interface StaticAsset {
  body: Buffer;
  type: string;
  /** Short content hash, appended to the asset URL so browsers may cache it for good. */
  version: string;
}

export interface AssetUrls {
  css: string;
  js: string;
}

const STATIC_FILES: Record<string, string> = {
  'dashboard.css': 'text/css; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
};

let assets: Map<string, StaticAsset> | null = null;

export function staticAssets(): Map<string, StaticAsset> {
  if (!assets) {
    assets = new Map();
    for (const [file, type] of Object.entries(STATIC_FILES)) {
      const body = readFileSync(path.join(VIEWS_DIR, 'static', file));
      assets.set(file, { body, type, version: createHash('sha256').update(body).digest('hex').slice(0, 12) });
    }
  }
  return assets;
}

export function assetUrls(base: string): AssetUrls {
  const files = staticAssets();
  const url = (file: string) => `${base}/static/${file}?v=${files.get(file)?.version ?? ''}`;
  return { css: url('dashboard.css'), js: url('dashboard.js') };
}
