import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AdminServer } from '../observability/admin-server.js';
import type { PolicyRejection } from '../control/plane.js';
import { CONSOLE_CSS, consoleHtml } from './page.js';

/**
 * The web console on the admin server: /console (one HTML page), its stylesheet, and the script bundle the
 * project's own build compiles from src/console/web/ into dist/console/ (plain TypeScript and DOM, no
 * framework, nothing from a CDN, so it works offline). The page reads the admin API (/debug/nodes,
 * /debug/ir, /api/rollouts, /api/policy/rejections) and sends commands only with the admin token a person
 * typed in. The strict content security policy allows nothing but this origin's own files.
 */

export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SECURITY_HEADERS = { 'content-security-policy': CONSOLE_CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store' };

/** The directory of the compiled bundle: dist/console/ beside the package.json above this file. */
export function bundleDir(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(dir, 'dist', 'console');
}

/** Adds the console routes to the admin server. */
export function registerConsole(admin: AdminServer, deps: { rejections: () => readonly PolicyRejection[] }): void {
  const dir = bundleDir();
  admin.route('/console', () => ({ text: consoleHtml(), contentType: 'text/html; charset=utf-8', headers: SECURITY_HEADERS }));
  admin.route('/console/style.css', () => ({ text: CONSOLE_CSS, contentType: 'text/css; charset=utf-8', headers: SECURITY_HEADERS }));
  admin.route(
    '/console/js',
    (url) => {
      const name = url.pathname.slice('/console/js/'.length);
      // Only the bundle's own flat file names: no path can leave dist/console.
      if (!/^[a-z][a-z0-9-]*\.js$/.test(name)) return { status: 404, text: 'not found\n' };
      const file = join(dir, name);
      if (!existsSync(file)) return { status: 503, text: `the console bundle is not built (${name} missing under ${dir}): run npm run build\n` };
      return { text: readFileSync(file, 'utf8'), contentType: 'text/javascript; charset=utf-8', headers: SECURITY_HEADERS };
    },
    { prefix: true },
  );
  admin.route('/api/policy/rejections', () => ({ json: { rejections: deps.rejections() } }));
}
