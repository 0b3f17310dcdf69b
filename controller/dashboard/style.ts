// The dashboard's style sheet, served at /dashboard.css.
export const DASHBOARD_CSS = `body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%;table-layout:fixed}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:30rem}#escalation{border:1px solid #bbb;padding:0 1rem 1rem;margin-top:1rem}
.ok{color:#176b2c}.bad{color:#a4161a}code{font-size:12px}#msg{color:#a4161a}
`;
