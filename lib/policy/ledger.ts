// Repairs counted per rule over the last hour, for maxRepairsPerHour: kept by the engine as repairs happen, and rebuilt by a
// backtest from the records it replays. Time is always given, never read.

/** The longest cap a rule may set (see the schema): more entries per rule than this never change an answer. */
const MAX_KEPT = 10_000;

export class RepairLedger {
  private readonly times = new Map<string, number[]>();

  constructor(private readonly windowMs = 3_600_000) {}

  /** A repair counted against `key` (a ruleKey) at `time`. Times are expected in order; a late one is placed where it belongs. */
  record(key: string, time: number): void {
    const list = this.times.get(key) ?? [];
    if (list.length === 0) this.times.set(key, list);
    let i = list.length;
    while (i > 0 && (list[i - 1] as number) > time) i--;
    list.splice(i, 0, time);
    this.prune(list, time);
    if (list.length > MAX_KEPT) list.splice(0, list.length - MAX_KEPT);
  }

  /** Repairs counted against `key` within (time - window, time]. */
  count(key: string, time: number): number {
    const list = this.times.get(key);
    if (!list) return 0;
    let n = 0;
    for (let i = list.length - 1; i >= 0; i--) {
      const t = list[i] as number;
      if (t <= time - this.windowMs) break;
      if (t <= time) n++;
    }
    return n;
  }

  /** Forgets what fell out of the window before `time`, and keys left empty. */
  sweep(time: number): void {
    for (const [key, list] of this.times) {
      this.prune(list, time);
      if (list.length === 0) this.times.delete(key);
    }
  }

  get keys(): number {
    return this.times.size;
  }

  private prune(list: number[], time: number): void {
    let drop = 0;
    while (drop < list.length && (list[drop] as number) <= time - this.windowMs) drop++;
    if (drop > 0) list.splice(0, drop);
  }
}
