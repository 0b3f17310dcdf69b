// The dashboard's script, served at /dashboard.js. Everything the API returns is data an agent may have chosen: it is
// only ever put in the page as text (textContent, never HTML), cut to a readable length, and a value that cannot be
// shown (a time out of range) is shown as it is instead of breaking the table. The operator token is sent once, to log
// in; the session lives in an HttpOnly cookie and the CSRF token only in this script's memory.
export const DASHBOARD_JS = `'use strict';
(function () {
  var MAX_TEXT = 200;
  var csrf = null;
  var timer = null;
  function $(s) { return document.querySelector(s); }
  function text(v) {
    var s;
    if (v === null || v === undefined) s = '';
    else if (typeof v === 'string') s = v;
    else if (typeof v === 'object') { try { s = JSON.stringify(v); } catch (e) { s = String(v); } }
    else s = String(v);
    return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) + '\\u2026' : s;
  }
  // Date throws past +-8.64e15 ms: such a time is shown as the number it is.
  function time(t) {
    return typeof t === 'number' && isFinite(t) && Math.abs(t) <= 8.64e15 ? new Date(t).toISOString() : text(t);
  }
  function span(cls, s) { var e = document.createElement('span'); e.className = cls; e.textContent = s; return e; }
  function button(label, onClick) {
    var b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', onClick);
    return b;
  }
  function cell(content) {
    var td = document.createElement('td');
    if (content instanceof Node) td.appendChild(content); else td.textContent = text(content);
    return td;
  }
  function rows(sel, items, cells) {
    var frag = document.createDocumentFragment();
    (Array.isArray(items) ? items : []).forEach(function (item) {
      var tr = document.createElement('tr');
      try { cells(item).forEach(function (c) { tr.appendChild(cell(c)); }); }
      catch (err) { while (tr.firstChild) tr.removeChild(tr.firstChild); tr.appendChild(cell('unreadable row: ' + text(err && err.message))); }
      frag.appendChild(tr);
    });
    var body = $(sel + ' tbody');
    while (body.firstChild) body.removeChild(body.firstChild);
    body.appendChild(frag);
  }
  function say(m) { $('#msg').textContent = text(m); }
  function show(loggedIn) {
    $('#login').hidden = loggedIn;
    $('#main').hidden = !loggedIn;
    if (!loggedIn) { csrf = null; if (timer) { clearInterval(timer); timer = null; } }
    else if (!timer) timer = setInterval(refresh, 5000);
  }
  function api(path, method, body) {
    var headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET') headers['x-csrf-token'] = csrf || '';
    return fetch(path, { method: method, headers: headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        if (r.status === 401) { show(false); throw new Error('please log in'); }
        return r.json().catch(function () { return null; }).then(function (j) {
          if (!r.ok) throw new Error(path + ': ' + r.status + ' ' + text(j && j.error && j.error.message));
          return j;
        });
      });
  }
  function decide(id, action) {
    var body = {};
    if (action === 'reject') {
      var reason = window.prompt('Reason for accepting this drift?');
      if (!reason) return;
      body = { reason: reason, expiresIn: window.prompt('Exception lasts (e.g. 7d)', '7d') || '7d' };
    } else if (!window.confirm('Approve escalation ' + id + '? The agent repairs the drift once.')) return;
    api('/api/v1/escalations/' + encodeURIComponent(id) + '/' + action, 'POST', body).then(refresh, function (err) { say(err.message); });
  }
  function refresh() {
    return Promise.all([
      api('/api/v1/agents', 'GET'),
      api('/api/v1/escalations?status=open', 'GET'),
      api('/api/v1/baselines', 'GET'),
      api('/api/v1/events?order=desc&limit=50', 'GET'),
      api('/api/v1/policies', 'GET'),
    ]).then(function (r) {
      rows('#agents', r[0], function (a) {
        return [a.id, a.facts && a.facts.hostname,
          Object.keys(a.labels || {}).map(function (k) { return k + '=' + text(a.labels[k]); }).join(', '),
          a.connected ? span('ok', 'yes') : span('bad', 'no'),
          (a.baselines || []).map(function (b) { return text(b.name) + '@' + text(b.version); }).join(', '),
          a.outboxPending];
      });
      rows('#escalations', r[1], function (e) {
        var actions = document.createElement('span');
        actions.appendChild(button('approve', function () { decide(e.id, 'approve'); }));
        actions.appendChild(document.createTextNode(' '));
        actions.appendChild(button('reject', function () { decide(e.id, 'reject'); }));
        // Who made the drift as the agent named it; for a fight, the opponent.
        var who = e.opponent ? 'fighting ' + text(e.opponent) : e.actorLabel;
        return [e.id, e.agentId, e.resource, e.kind, time(e.openedAt), who, actions];
      });
      rows('#baselines', r[2], function (b) { return [b.name, b.latest, b.target ? b.target.version : '-']; });
      rows('#policies', r[4], function (p) { return [p.name, p.latest, p.target ? p.target.version : '-']; });
      rows('#events', r[3], function (e) {
        var code = document.createElement('code');
        code.textContent = text(e.resource);
        return [time(e.time), e.agentId, e.event, code];
      });
      say('');
    }).catch(function (err) { say(err.message); });
  }
  function start() {
    $('#login').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var input = $('#token');
      var token = input.value;
      input.value = '';
      fetch('/api/v1/session', { method: 'POST', headers: { 'content-type': 'application/json' }, credentials: 'same-origin', body: JSON.stringify({ token: token }) })
        .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(text(j && j.error && j.error.message) || String(r.status)); return j; }); })
        .then(function (s) { csrf = s.csrf; show(true); return refresh(); })
        .catch(function (err) { say(err.message); });
    });
    $('#logout').addEventListener('click', function () {
      api('/api/v1/session', 'DELETE').then(function () { show(false); }, function (err) { say(err.message); });
    });
    // After a reload the cookie may still hold a session: ask for its CSRF token.
    api('/api/v1/session', 'GET').then(function (s) { csrf = s.csrf; show(true); return refresh(); }, function () { show(false); say(''); });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
`;
