// The controller's signing key as the fleet knows it: every enrolled agent pinned its public key from its join token, so a
// controller that silently made a new key (signing.key lost or replaced) would have every agent refuse every baseline. It
// refuses to start instead, unless the operator rotates on purpose.
import { existsSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../lib/clock.js';
import { HsError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { keyIdOf, type SigningKey } from '../lib/signing.js';
import { loadSigningKey } from './identity.js';
import type { ControllerStore } from './store/types.js';

const META_KEY = 'signing.publicKey';

export async function openSigningKey(dataDir: string, store: ControllerStore, opts: { rotate: boolean; clock: Clock; log: Logger }): Promise<SigningKey> {
  const file = path.join(dataDir, 'signing.key');
  const pinned = await store.getMeta(META_KEY);
  const pinnedId = pinned ? keyIdOf(Buffer.from(pinned, 'base64')) : 'recorded by no earlier start';
  const enrolled = (await store.listAgents()).filter((a) => a.revokedAt === null).length;
  const restore = `Restore signing.key from a backup of ${dataDir}; if it is lost for good, start once with --rotate-signing-key and enroll every agent again (on each: remove STATE_DIR/controller.json, start with a new --token)`;
  if (opts.rotate && existsSync(file)) {
    const retired = `${file}.retired-${opts.clock.now()}`;
    renameSync(file, retired);
    opts.log.warn({ retired }, 'signing key retired; a new one is made');
  } else if (!existsSync(file) && enrolled > 0 && !opts.rotate) {
    throw new HsError('HS_CONFIG', `${file} is missing while ${enrolled} agent(s) are enrolled: they pinned signing key ${pinnedId} and would refuse everything signed by a new one. ${restore}`);
  }
  const key = loadSigningKey(dataDir);
  const current = key.publicKey.toString('base64');
  if (pinned && pinned !== current && enrolled > 0 && !opts.rotate) {
    throw new HsError('HS_CONFIG', `${file} holds signing key ${key.keyId}, but the ${enrolled} enrolled agent(s) pinned ${pinnedId}. ${restore}`);
  }
  if (pinned !== current) {
    if (pinned) {
      opts.log.warn({ from: pinnedId, to: key.keyId, agents: enrolled }, 'signing key rotated: agents enrolled before must be enrolled again');
      await store.addControllerEvent({ time: opts.clock.now(), kind: 'signing_key_rotated', rolloutId: null, baseline: null, detail: { from: pinnedId, to: key.keyId, agents: enrolled } });
    }
    await store.setMeta(META_KEY, current);
  }
  return key;
}
