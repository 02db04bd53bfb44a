/**
 * The console's HTML shell and stylesheet. The page is static: everything on it is drawn by the script
 * bundle from the admin API, so nothing here depends on the state of the control plane.
 */

/** The console page. */
export function consoleHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Flowgate console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/style.css">
<script type="module" src="/console/js/app.js"></script>
</head>
<body>
<header>
  <h1>Flowgate</h1>
  <span id="lease" class="muted"></span>
  <span id="updated" class="muted"></span>
  <form id="token-form" autocomplete="off">
    <input id="token" type="password" placeholder="admin token" aria-label="admin token">
    <button type="submit" id="token-apply">Unlock</button>
    <span id="mode" class="badge">read-only</span>
  </form>
</header>
<main>
  <section><h2>Rollouts</h2><div id="rollouts"><p class="muted">loading…</p></div></section>
  <section><h2>Models</h2><div id="models"></div></section>
  <section><h2>Fleet</h2><div id="fleet"></div></section>
  <section><h2>Policy rejections</h2><div id="rejections"></div></section>
</main>
<p id="error" role="alert"></p>
</body>
</html>
`;
}

export const CONSOLE_CSS = `
:root { --fg: #1d2330; --muted: #667085; --line: #d0d5dd; --bg: #f8f9fb; --canary: #d9480f; --stable: #1c7ed6; --weight: #2b8a3e; --bad: #c92a2a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.1rem; margin: 0; }
#token-form { margin-left: auto; display: flex; gap: .4rem; align-items: center; }
main { padding: 1rem 1.2rem; display: grid; gap: 1rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; }
h2 { font-size: 1rem; margin: .2rem 0 .6rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
.muted { color: var(--muted); }
.badge { padding: .1rem .5rem; border-radius: 999px; background: #eef; font-size: .8rem; }
.phase-progressing { background: #e7f5ff; } .phase-paused { background: #fff3bf; } .phase-succeeded { background: #d3f9d8; }
.phase-failed, .phase-aborted { background: #ffe3e3; } .phase-pending, .phase-idle { background: #f1f3f5; }
.rollout { border-top: 1px solid var(--line); padding: .6rem 0; }
.rollout:first-child { border-top: 0; }
.rollout .head { display: flex; gap: .8rem; align-items: baseline; flex-wrap: wrap; }
.rollout .actions { margin-left: auto; display: flex; gap: .3rem; }
.chart { width: 100%; max-width: 900px; height: auto; display: block; margin: .4rem 0; }
.chart .axis { stroke: var(--line); }
.chart text { font-size: 10px; fill: var(--muted); }
.chart .weight { stroke: var(--weight); fill: none; stroke-width: 2; }
.chart .err-canary { stroke: var(--canary); fill: none; stroke-width: 1.5; }
.chart .err-stable { stroke: var(--stable); fill: none; stroke-width: 1.5; }
.chart .lat-canary { stroke: var(--canary); fill: none; stroke-dasharray: 4 3; }
.chart .lat-stable { stroke: var(--stable); fill: none; stroke-dasharray: 4 3; }
.chart .decision { stroke: #868e96; stroke-dasharray: 2 3; }
.chart .decision.bad { stroke: var(--bad); }
.legend { display: flex; gap: 1rem; font-size: .8rem; color: var(--muted); }
.chart .dot { stroke-dasharray: none; fill: #fff; }
.lg-weight { background: var(--weight); } .lg-canary { background: var(--canary); } .lg-stable { background: var(--stable); }
.legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 4px; }
.nack { color: var(--bad); }
#error { color: var(--bad); padding: 0 1.2rem; }
button { font: inherit; padding: .15rem .6rem; }
`;
