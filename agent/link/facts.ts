// Host facts sent in the hello (systeminformation, falling back to node:os). The controller derives fact labels from them
// (lib/labels.ts labelsFromFacts) where the join token allows their keys.
import os from 'node:os';
import si from 'systeminformation';
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
