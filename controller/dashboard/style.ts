// The dashboard's style sheet, served at /dashboard.css.
export const DASHBOARD_CSS = `body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%;table-layout:fixed}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
.ok{color:#176b2c}.bad{color:#a4161a}code{font-size:12px}#msg{color:#a4161a}
`;
