// The temporary files a repair writes next to its target (`.NAME.homeostat-<12 hex>`), and finding the ones an agent
// killed mid-write left behind: only entries of that exact pattern, regular, owned by root and with one link count.
import { readdirSync, type BigIntStats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { HeldDir } from './pathwalk.js';

const TEMP = /^\.(.+)\.homeostat-[0-9a-f]{12}$/s;

export function tempNameFor(name: string): string {
  return `.${name}.homeostat-${randomBytes(6).toString('hex')}`;
}

/** Whether `entry`, found next to `name`, is one of our temporary files for it (by name only; see isLeftover). */
export function isTempOf(entry: string, name: string): boolean {
  return TEMP.exec(entry)?.[1] === name;
}

/** What an interrupted repair leaves: a regular file of ours, never one a user made or linked elsewhere. */
export function isLeftover(st: BigIntStats | undefined): boolean {
  return st !== undefined && st.isFile() && st.uid === 0n && st.nlink === 1n;
}

interface Listing {
  dev: bigint;
  ino: bigint;
  /** Temporary file names by the target name they were for. */
  byTarget: Map<string, string[]>;
}

/** Listings kept at most: the ones that matter are those of the start-up pass, folder after folder. */
const MAX_LISTINGS = 1024;

/**
 * Lists directories once for the temporary files in them, shared by every resource of the agent: a directory of 10,000
 * managed files is read once, not 10,000 times. Leftovers come from an agent that ran before this one, so a listing of
 * the same directory (device and inode) stays good for this process; a name found in it is checked again with lstat
 * before anything is done with it.
 */
export class TempFileIndex {
  private readonly listings = new Map<string, Listing>();

  /** Names in `dir` that look like our temporary files for `name` (the caller checks each with isLeftover). */
  candidates(dir: HeldDir, name: string): string[] {
    let l = this.listings.get(dir.path);
    if (!l || l.dev !== dir.dev || l.ino !== dir.ino) {
      l = { dev: dir.dev, ino: dir.ino, byTarget: new Map() };
      for (const entry of readdirSync(dir.self())) {
        const target = TEMP.exec(entry)?.[1];
        if (target === undefined) continue;
        const list = l.byTarget.get(target) ?? [];
        list.push(entry);
        l.byTarget.set(target, list);
      }
      this.listings.delete(dir.path);
      if (this.listings.size >= MAX_LISTINGS) this.listings.delete(this.listings.keys().next().value as string);
      this.listings.set(dir.path, l);
    }
    return l.byTarget.get(name) ?? [];
  }
}
