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
    if (!loggedIn) { csrf = null; closeReview(); if (timer) { clearInterval(timer); timer = null; } }
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
    api('/api/v1/escalations/' + encodeURIComponent(id) + '/' + action, 'POST', body).then(showEscalation).then(refresh, function (err) { say(err.message); });
  }
  // The escalation under review: shown in full (latest observed state, diff, actor, version, every sighting) before
  // the operator may approve or reject it, and kept current while it stays open on the page.
  var reviewing = null;
  function versionText(b, v) { return b ? text(b) + (v === null || v === undefined ? '' : ' v' + text(v)) : '-'; }
  function actorText(e) {
    if (e.opponent) return 'fighting ' + text(e.opponent);
    var a = e.actor;
    if (!a) return 'unknown';
    var parts = [e.actorLabel || (typeof a.exe === 'string' ? a.exe : 'unknown')];
    if (typeof a.user === 'string' || typeof a.uid === 'number') parts.push('user ' + (typeof a.user === 'string' ? a.user : '') + (typeof a.uid === 'number' ? ' (uid ' + a.uid + ')' : ''));
    if (typeof a.loginUser === 'string' && a.loginUser !== a.user) parts.push('logged in as ' + a.loginUser);
    if (typeof a.pid === 'number') parts.push('pid ' + a.pid);
    if (typeof a.source === 'string') parts.push('known from ' + a.source);
    return parts.join(', ');
  }
  function stateText(v) {
    if (v === null || v === undefined) return '-';
    if (typeof v !== 'object' || Array.isArray(v)) return text(v);
    return Object.keys(v).map(function (k) { return k + '=' + (typeof v[k] === 'string' ? v[k] : JSON.stringify(v[k])); }).join(' ');
  }
  function decisionText(e) {
    if (e.status === 'open') return 'waiting for a decision';
    if (e.status === 'resolved') return 'resolved ' + time(e.decidedAt) + ': ' + text(e.reason || 'the agent repaired it');
    var out = e.status + ' by ' + text(e.decidedBy || '?') + ' ' + time(e.decidedAt) + (e.reason ? ': ' + text(e.reason) : '');
    if (e.outcome === 'done') out += '; carried out by the agent';
    else if (e.outcome === 'pending') out += '; the agent has not carried it out yet';
    else if (e.outcome === 'failed') out += '; the agent could not carry it out: ' + text(e.outcomeError);
    return out;
  }
  function showEscalation(e) {
    var hist = Array.isArray(e.history) ? e.history : [];
    var first = hist[0];
    var opened = first && (first.version !== e.version || first.baseline !== e.baseline) ? ' (opened under ' + versionText(first.baseline, first.version) + ')' : '';
    $('#esc-title').textContent = 'Escalation ' + text(e.id) + ': ' + text(e.resource) + ' on ' + text(e.agentId) + ', ' + text(e.status);
    var dl = $('#esc-fields');
    while (dl.firstChild) dl.removeChild(dl.firstChild);
    [['baseline', versionText(e.baseline, e.version) + opened],
      ['kind', text(e.kind) + (e.detail ? ': ' + text(e.detail) : '')],
      ['opened', time(e.openedAt)],
      ['last seen', time(e.lastSeenAt || e.openedAt) + (e.repeats > 0 ? ', ' + e.repeats + ' repeat' + (e.repeats === 1 ? '' : 's') + ' since it opened' : ', once')],
      ['actor', actorText(e)],
      ['rule', e.decision && e.decision.reason ? text(e.decision.reason) : '-'],
      ['observed', stateText(e.observed)],
      ['desired', stateText(e.desired)],
      ['decision', decisionText(e)]].forEach(function (f) {
      var dt = document.createElement('dt'); dt.textContent = f[0];
      var dd = document.createElement('dd'); dd.textContent = f[1];
      dd.setAttribute('data-field', f[0]);
      dl.appendChild(dt); dl.appendChild(dd);
    });
    // The diff is shown whole (the API bounds it), as text.
    $('#esc-diff').textContent = typeof e.diff === 'string' && e.diff !== '' ? e.diff : '(no diff: see the observed and desired state)';
    rows('#esc-history', hist, function (h) { return [time(h.time), h.event, h.trigger || '-', versionText(h.baseline, h.version), h.actor || '-', h.detail]; });
    var open = e.status === 'open';
    $('#esc-approve').hidden = !open;
    $('#esc-reject').hidden = !open;
    $('#escalation').hidden = false;
  }
  function review(id) {
    reviewing = id;
    return api('/api/v1/escalations/' + encodeURIComponent(id), 'GET').then(showEscalation, function (err) { say(err.message); });
  }
  function closeReview() { reviewing = null; $('#escalation').hidden = true; }
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
        // Decisions are taken in the review, where what an approval would repair is shown first.
        var actions = button('review', function () { review(e.id); });
        // Who made the drift as the agent named it; for a fight, the opponent.
        var who = e.opponent ? 'fighting ' + text(e.opponent) : e.actorLabel;
        return [e.id, e.agentId, e.resource, e.kind, time(e.openedAt), who, e.repeats, actions];
      });
      if (reviewing !== null) review(reviewing);
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
    $('#esc-approve').addEventListener('click', function () { if (reviewing !== null) decide(reviewing, 'approve'); });
    $('#esc-reject').addEventListener('click', function () { if (reviewing !== null) decide(reviewing, 'reject'); });
    $('#esc-close').addEventListener('click', closeReview);
    $('#logout').addEventListener('click', function () {
      api('/api/v1/session', 'DELETE').then(function () { show(false); }, function (err) { say(err.message); });
    });
    // After a reload the cookie may still hold a session: ask for its CSRF token.
    api('/api/v1/session', 'GET').then(function (s) { csrf = s.csrf; show(true); return refresh(); }, function () { show(false); say(''); });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
`;
