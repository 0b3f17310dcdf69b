// The parsed, validated form of a policy document: what the agent consults on every drift and the controller stores.
import type { SourceLocation } from '../errors.js';
import type { Risk } from '../baseline/types.js';
import type { ActorSource } from './actor.js';
import type { Glob } from './glob.js';
import type { MaintenanceWindow } from './windows.js';

/**
 * What changed, as rules name it. A resource reports `active` for a service's running state: rules call it `state`.
 * `type` is a path that holds something else than declared (a symlink or a directory where a file belongs).
 */
export const CHANGE_KINDS = ['content', 'mode', 'owner', 'group', 'exists', 'type', 'state', 'enabled', 'masked', 'value'] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

/** The change kind of a field a resource's diff reports (`active` → `state`); other fields keep their name. */
export function changeKindOf(field: string): string {
  return field === 'active' ? 'state' : field;
}

/** Which times a rule applies at: inside one of the named windows, inside any window of the document, or outside all. */
export type WindowMatch = { kind: 'in'; names: readonly string[] } | { kind: 'any' } | { kind: 'none' };

export interface ActorMatch {
  exe?: readonly Glob[];
  user?: readonly Glob[];
  loginUser?: readonly Glob[];
  unit?: readonly Glob[];
  source?: ReadonlySet<ActorSource>;
}

/** Every condition present must hold; a list holds when any of its values does. No condition: every drift. */
export interface RuleMatch {
  resource?: readonly Glob[];
  kind?: ReadonlySet<string>;
  baseline?: readonly Glob[];
  change?: ReadonlySet<string>;
  /** `risk` and `riskAtLeast` together: the risks that satisfy both. */
  risk?: ReadonlySet<Risk>;
  window?: WindowMatch;
  actor?: ActorMatch;
}

export type RuleAction =
  | { type: 'repair' }
  | { type: 'escalate' }
  | { type: 'monitor' }
  | { type: 'ignore' }
  | { type: 'defer'; ms: number; text: string }
  | { type: 'defer'; endOfWindow: true; text: 'end-of-window' };

export interface PolicyRule {
  /** Position in spec.rules, from 0: the `N` of `spec.rules[N]`. */
  index: number;
  description?: string;
  match: RuleMatch;
  /** The match as written, for people: `kind file, change content, actor.exe /usr/bin/vim*`. */
  matchText: string;
  action: RuleAction;
  limits?: { maxRepairsPerHour: number };
  location: SourceLocation;
}

export interface PolicyDocument {
  apiVersion: 'homeostat/v1';
  kind: 'Policy';
  name: string;
  description?: string;
  labels?: Record<string, string>;
  selector?: { matchLabels: Record<string, string> };
  /** Higher is consulted first; equal priorities in name order. */
  priority: number;
  windows: ReadonlyMap<string, MaintenanceWindow>;
  rules: readonly PolicyRule[];
  /** The exact text and its sha256: a change to the text is a new version. */
  origin: { file: string; sha256: string; text: string };
}

export function actionText(a: RuleAction): string {
  return a.type === 'defer' ? `defer ${a.text}` : a.type;
}
