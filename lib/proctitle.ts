// The name a Homeostat process goes by in ps, pgrep, top and systemctl status, with secrets taken off its command line.

/**
 * Node names its main thread "MainThread", and that is what /proc/PID/comm shows, so `pgrep homeostat-agent` found
 * nothing. Setting the title sets comm to `name` (the kernel keeps 15 bytes: "homeostat-agent" fits, the controller is
 * "homeostat-contr") and rewrites /proc/PID/cmdline to `name` and the arguments, with the value of each secret flag
 * replaced by `***`: until then the command line, token included, is readable by every local user.
 */
export function setProcessTitle(name: string, args: readonly string[], secretFlags: readonly string[]): void {
  const shown: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    if (!secretFlags.includes(flag)) {
      shown.push(a);
    } else if (eq > 0) {
      shown.push(`${flag}=***`);
    } else {
      shown.push(a);
      if (i + 1 < args.length) {
        shown.push('***');
        i++;
      }
    }
  }
  process.title = [name, ...shown].join(' ');
}
