// Host facts sent in the hello (systeminformation, falling back to node:os), and the fact labels selectors can use.
import os from 'node:os';
import si from 'systeminformation';
import type { Labels } from '../../lib/labels.js';
import type { HostFacts } from '../../proto/codec.js';

export async function collectFacts(timeoutMs = 5000): Promise<HostFacts> {
  const fallback: HostFacts = {
    hostname: os.hostname(),
    os: os.type(),
    osRelease: os.release(),
    kernel: os.release(),
    arch: os.arch(),
    cpu: os.cpus()[0]?.model ?? '',
    cpuCores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
  };
  const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref());
  try {
    const got = await Promise.race([Promise.all([si.osInfo(), si.cpu()]), timeout]);
    if (!got) return fallback;
    const [info, cpu] = got;
    return {
      ...fallback,
      hostname: info.hostname || fallback.hostname,
      os: info.distro || fallback.os,
      osRelease: info.release || fallback.osRelease,
      kernel: info.kernel || fallback.kernel,
      arch: info.arch || fallback.arch,
      cpu: [cpu.manufacturer, cpu.brand].filter(Boolean).join(' ') || fallback.cpu,
      cpuCores: cpu.cores || fallback.cpuCores,
    };
  } catch {
    return fallback;
  }
}

const clean = (v: string): string => v.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);

/** `hostname`, `os`, `kernel` and `arch` as labels, unless the operator set them. */
export function factLabels(facts: HostFacts, labels: Labels): Labels {
  return { hostname: clean(facts.hostname), os: clean(facts.os), kernel: clean(facts.kernel), arch: clean(facts.arch), ...labels };
}
