// How resources are named: absolute paths, sysctl keys and systemd unit names, their normal forms and what is wrong with a bad one.

/** Why `path` is not an absolute, normalised path, or undefined when it is one. */
const NORMAL_PATH = /^(\/(?!\.\.?(\/|$))[^/\0\n]+)+$/;

export function pathProblem(path: string): string | undefined {
  if (NORMAL_PATH.test(path)) return undefined; // the common case, in one step
  if (path === '') return 'a path must not be empty';
  if (!path.startsWith('/')) return `path "${path}" is relative; write it absolute, starting with /`;
  if (path.includes('\0') || path.includes('\n')) return 'a path must not contain NUL or line breaks';
  const faults: string[] = [];
  const segments = path.split('/').slice(1);
  if (segments.includes('..')) faults.push('".."');
  if (segments.includes('.')) faults.push('"."');
  if (path.slice(1, -1).includes('//')) faults.push('"//"');
  if (path.length > 1 && path.endsWith('/')) faults.push('a trailing "/"');
  const normal = normalisePath(path);
  if (normal === '/') return 'the root directory / cannot be managed';
  if (faults.length > 0) return `path "${path}" is not normalised (it has ${faults.join(' and ')}); write ${normal}`;
  return undefined;
}

function normalisePath(path: string): string {
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

/** The folders above a normalised absolute path, nearest first: `/a/b/c` → `/a/b`, `/a`. */
export function parentsOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) out.push(path.slice(0, i));
  return out;
}

const SYSCTL_SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * The dotted form of a sysctl key. A key whose first separator is `/` is in the /proc/sys form (`net/ipv4/conf/eth0.100/rp_filter`):
 * its slashes become dots and its dots slashes, as sysctl(8) does, so an interface name with a dot survives the round trip.
 */
export function normaliseSysctl(key: string): string {
  const slash = key.indexOf('/');
  const dot = key.indexOf('.');
  if (slash === -1 || (dot !== -1 && dot < slash)) return key;
  return key.replace(/[./]/g, (c) => (c === '/' ? '.' : '/'));
}

/** Why `key` is not a sysctl key, or undefined when it is one. */
export function sysctlProblem(key: string): string | undefined {
  if (key.startsWith('/proc/sys/')) return `write the sysctl key without /proc/sys: ${normaliseSysctl(key.slice('/proc/sys/'.length))}`;
  if (key.split(/[./]/).every((s) => SYSCTL_SEGMENT.test(s))) return undefined;
  return `"${key}" is not a sysctl key: names of letters, digits, "_" and "-" joined by "." (net.ipv4.ip_forward) or "/" (net/ipv4/ip_forward)`;
}

/** Unit types a service resource can start, stop, enable and mask. */
export const STARTABLE_UNIT_TYPES = ['service', 'socket', 'timer', 'path', 'target', 'mount'] as const;
/** Every unit type systemd knows; a name ending in another suffix is a service whose name has a dot (`php8.2-fpm`). */
const UNIT_TYPES = new Set<string>([...STARTABLE_UNIT_TYPES, 'device', 'automount', 'swap', 'slice', 'scope']);

/** `nginx` → `nginx.service`; names that already carry a unit type suffix stay as they are. */
export function normaliseUnit(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot !== -1 && UNIT_TYPES.has(name.slice(dot + 1)) ? name : `${name}.service`;
}

/** Why a (normalised) unit name cannot be managed by a service resource, or undefined. */
export function unitProblem(unit: string): string | undefined {
  const dot = unit.lastIndexOf('.');
  const type = unit.slice(dot + 1);
  if (!(STARTABLE_UNIT_TYPES as readonly string[]).includes(type)) {
    return `a service resource manages ${STARTABLE_UNIT_TYPES.map((t) => `.${t}`).join(', ')} units, not .${type}`;
  }
  if (unit.slice(0, dot).endsWith('@')) return `"${unit}" is a template; name an instance of it, e.g. ${unit.slice(0, dot)}main.${type}`;
  if (dot === 0) return 'a unit name must not be empty';
  return undefined;
}
