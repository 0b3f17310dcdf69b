// The resource kinds this agent knows, by the key that names them in a baseline. A new kind is one file plus one line here.
import type { ResourceKind } from './resource.js';
import { fileKind } from './file.js';
import { directoryKind } from './directory.js';
import { serviceKind } from './service.js';
import { sysctlKind } from './sysctl.js';

const kinds: ResourceKind[] = [
  fileKind,
  directoryKind,
  serviceKind,
  sysctlKind,
];

export const registry: ReadonlyMap<string, ResourceKind> = new Map(kinds.map((k) => [k.type, k]));
