// Giving memory back after bursts. Activating a large baseline (parsing 10,000 resources, comparing them with the running
// ones) leaves tens of megabytes of garbage in V8's old space, and V8 keeps those pages committed for as long as the
// daemon stays quiet — which is most of its life. Once an activation has settled, one full, compacting collection
// returns them: the idle daemon's anonymous memory drops by about a third (bench/README.md, binary-footprint).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (opts?: { type?: 'major'; execution?: 'sync'; flavor?: 'regular' | 'last-resort' }) => void;

let gc: Gc | undefined;
let timer: NodeJS.Timeout | undefined;

/** V8's gc(), made available without a command-line flag (the flag is read when a context is created). */
function collector(): Gc | undefined {
  if (gc) return gc;
  try {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as Gc;
  } catch {
    gc = undefined;
  }
  return gc;
}

/** Collects and compacts the heap `delayMs` from now (one collection for a burst of calls). Never blocks a repair for long. */
export function compactHeapSoon(delayMs = 1000): void {
  if (timer) timer.refresh();
  else {
    timer = setTimeout(() => {
      timer = undefined;
      collector()?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    }, delayMs);
    timer.unref();
  }
}
