import { chromium, type Browser } from 'playwright-core';

/**
 * Headless Chromium from Debian's package (/usr/bin/chromium), driven by playwright-core: no browser is
 * downloaded, and nothing it loads may come from outside this machine.
 */

export const CHROMIUM = process.env.FLOWGATE_CHROMIUM ?? '/usr/bin/chromium';

/** Launches the system Chromium headless, sandbox and background networking off. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
