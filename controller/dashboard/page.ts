// The dashboard at `/`: one static page; its script and style are served from their own paths (assets.ts) so the
// Content-Security-Policy can forbid every inline script and style.
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Homeostat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head><body>
<h1>Homeostat controller</h1>
<form id="login" hidden><label>Operator token <input id="token" type="password" size="40" autocomplete="off"></label> <button>Log in</button></form>
<div id="main" hidden>
<p><button id="logout" type="button">Log out</button></p>
<h2>Agents</h2><table id="agents"><thead><tr><th>id</th><th>host</th><th>labels</th><th>connected</th><th>baselines</th><th>outbox</th></tr></thead><tbody></tbody></table>
<h2>Open escalations</h2><table id="escalations"><thead><tr><th>id</th><th>agent</th><th>resource</th><th>kind</th><th>opened</th><th>actor</th><th>repeats</th><th></th></tr></thead><tbody></tbody></table>
<section id="escalation" hidden><h2 id="esc-title"></h2>
<dl id="esc-fields"></dl>
<h3>Diff (observed &rarr; desired)</h3><pre id="esc-diff"></pre>
<h3>Sightings</h3><table id="esc-history"><thead><tr><th>time</th><th>event</th><th>trigger</th><th>version</th><th>actor</th><th>detail</th></tr></thead><tbody></tbody></table>
<p id="esc-actions"><button id="esc-approve" type="button">approve</button> <button id="esc-reject" type="button">reject</button> <button id="esc-close" type="button">close</button></p>
</section>
<h2>Baselines</h2><table id="baselines"><thead><tr><th>name</th><th>latest</th><th>rolled out</th></tr></thead><tbody></tbody></table>
<h2>Policies</h2><table id="policies"><thead><tr><th>name</th><th>latest</th><th>rolled out</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2><table id="events"><thead><tr><th>time</th><th>agent</th><th>event</th><th>resource</th></tr></thead><tbody></tbody></table>
</div>
<p id="msg" role="status"></p>
</body></html>
`;
