// The dashboard at `/`: one static page that reads the same API as homeostatctl with the operator token the user pastes in.
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Homeostat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.ok{color:#176b2c}.bad{color:#a4161a}#auth{margin-bottom:1rem}code{font-size:12px}
</style></head><body>
<h1>Homeostat controller</h1>
<form id="auth"><label>Operator token <input id="token" type="password" size="40"></label> <button>Use</button> <span id="msg"></span></form>
<h2>Agents</h2><table id="agents"><thead><tr><th>id</th><th>host</th><th>labels</th><th>connected</th><th>baselines</th><th>outbox</th></tr></thead><tbody></tbody></table>
<h2>Open escalations</h2><table id="escalations"><thead><tr><th>id</th><th>agent</th><th>resource</th><th>kind</th><th>opened</th><th></th></tr></thead><tbody></tbody></table>
<h2>Baselines</h2><table id="baselines"><thead><tr><th>name</th><th>latest</th><th>rolled out</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2><table id="events"><thead><tr><th>time</th><th>agent</th><th>event</th><th>resource</th></tr></thead><tbody></tbody></table>
<script>
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
let token = localStorage.getItem('hsToken') || '';
$('#token').value = token;
$('#auth').onsubmit = (e) => { e.preventDefault(); token = $('#token').value; localStorage.setItem('hsToken', token); refresh(); };
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' } });
  if (!r.ok) throw new Error(path + ': ' + r.status);
  return r.json();
}
function rows(sel, items, cells) { $(sel + ' tbody').innerHTML = items.map((i) => '<tr>' + cells(i).map((c) => '<td>' + c + '</td>').join('') + '</tr>').join(''); }
async function decide(id, action) {
  const body = action === 'reject' ? { reason: prompt('Reason for accepting this drift?') || '', expiresIn: prompt('Exception lasts (e.g. 7d)', '7d') || '7d' } : {};
  await api('/api/v1/escalations/' + id + '/' + action, { method: 'POST', body: JSON.stringify(body) });
  refresh();
}
window.decide = decide;
async function refresh() {
  try {
    const [agents, escs, baselines, events] = await Promise.all([api('/api/v1/agents'), api('/api/v1/escalations?status=open'), api('/api/v1/baselines'), api('/api/v1/events?since=1h&limit=10000')]);
    rows('#agents', agents, (a) => [esc(a.id), esc(a.facts && a.facts.hostname), esc(Object.entries(a.labels).map(([k, v]) => k + '=' + v).join(', ')),
      a.connected ? '<span class="ok">yes</span>' : '<span class="bad">no</span>', esc(a.baselines.map((b) => b.name + '@' + b.version).join(', ')), esc(a.outboxPending)]);
    rows('#escalations', escs, (e) => [esc(e.id), esc(e.agentId), esc(e.resource), esc(e.kind), esc(new Date(e.openedAt).toISOString()),
      '<button onclick="decide(' + e.id + ',\\'approve\\')">approve</button> <button onclick="decide(' + e.id + ',\\'reject\\')">reject</button>']);
    rows('#baselines', baselines, (b) => [esc(b.name), esc(b.latest), esc(b.target ? b.target.version : '-')]);
    rows('#events', events.slice(-50).reverse(), (e) => [esc(new Date(e.time).toISOString()), esc(e.agentId), esc(e.event), '<code>' + esc(e.resource) + '</code>']);
    $('#msg').textContent = '';
  } catch (err) { $('#msg').textContent = String(err.message); }
}
if (token) refresh();
setInterval(() => { if (token) refresh(); }, 5000);
</script></body></html>
`;
