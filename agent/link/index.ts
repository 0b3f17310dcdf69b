// The agent side of the controller link, as the daemon starts it.
import type { Labels } from '../../lib/labels.js';
import type { Logger } from '../../lib/log.js';
import type { LinkedAgent } from './agent-port.js';
import { ControllerLink } from './link.js';

export type { LinkedAgent } from './agent-port.js';
export { ControllerLink, type LinkOptions, type LinkState } from './link.js';
export type { LinkProblem, LinkProblemReason } from './problems.js';

/** The running link, as the daemon holds it. */
export interface RunningLink {
  stop(): Promise<void>;
  /** See ControllerLink.forgetting: a local forget carried out between the controller's frames and reported to it. */
  forgetting: ControllerLink['forgetting'];
}

export async function startLink(
  agent: LinkedAgent,
  opts: { url: string; token?: string; stateDir: string; labels: Labels; insecureHttp?: boolean; log: Logger },
): Promise<RunningLink> {
  const link = new ControllerLink(agent, opts);
  await link.start();
  return { stop: () => link.stop(), forgetting: (carryOut) => link.forgetting(carryOut) };
}
