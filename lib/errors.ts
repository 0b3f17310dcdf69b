// The error vocabulary shared by agent and controller: stable codes, a retryable flag, a cause, and for bad input a location.

/** Every code the product can report. docs/errors.md lists each one; a test keeps the two in step. */
export const ERROR_CODES = {
  HS_BASELINE_PARSE: 'the baseline is not well-formed YAML',
  HS_BASELINE_INVALID: 'the baseline breaks the schema or a semantic rule',
  HS_BASELINE_UNKNOWN_KEY: 'a key the baseline format does not define',
  HS_BASELINE_DUPLICATE: 'two resources with the same id',
  HS_BASELINE_CONFLICT: 'two resources that cannot both hold',
  HS_BASELINE_SOURCE: 'a `source:` file that cannot be read',
  HS_BASELINE_SIGNATURE: 'a baseline whose signature does not verify',
  HS_BASELINE_STALE: 'a baseline version older than the one enforced, or past its expiry',
  HS_POLICY_PARSE: 'the policy is not well-formed YAML',
  HS_POLICY_INVALID: 'the policy breaks the schema or a semantic rule',
  HS_POLICY_UNKNOWN_KEY: 'a key the policy format does not define',
  HS_POLICY_DUPLICATE: 'a window, key or policy name given twice',
  HS_POLICY_UNSUPPORTED: 'a policy feature reserved for a later version',
  HS_POLICY_SIGNATURE: 'a policy whose signature does not verify',
  HS_POLICY_STALE: 'a policy version older than the one held, or past its expiry',
  HS_RESOURCE_UNKNOWN_TYPE: 'a resource type this agent does not know',
  HS_HOST_PERMISSION: 'the host refused the operation (EACCES, EPERM)',
  HS_HOST_READ_ONLY: 'the filesystem is read-only (EROFS)',
  HS_HOST_DISK_FULL: 'no space or quota left (ENOSPC, EDQUOT)',
  HS_HOST_NOT_FOUND: 'a path, unit or key the host does not have',
  HS_HOST_NO_SUCH_USER: 'an owner or group the host does not have',
  HS_HOST_SYMLINK: 'a symlink stands where a managed file should be',
  HS_HOST_UNSAFE_PATH: 'a managed path goes through a symlink, or a change could be redirected by another user',
  HS_HOST_MOUNT_GONE: 'the filesystem a managed path was on is no longer mounted',
  HS_HOST_IO: 'any other failure of the host to do what was asked',
  HS_HOST_TIMEOUT: 'the host did not answer in time',
  HS_VALIDATE_REJECTED: "the resource's validate command refused the new content",
  HS_VALIDATE_UNAVAILABLE: "the resource's validate command could not be run (not found, not executable)",
  HS_VERIFY_FAILED: 'the repair ran but the state read back still differs',
  HS_STORE: 'the local or controller database failed',
  HS_STORE_MIGRATION: 'the database was written by a newer version',
  HS_AUDIT_TAMPERED: 'the audit hash chain does not verify',
  HS_CONFIG: 'bad command-line flags or configuration file',
  HS_PROTOCOL: 'a malformed or oversized message on the wire',
  HS_AUTH: 'missing, wrong, expired or revoked credentials',
  HS_LABEL_REFUSED: 'a label an agent asked for that its join token does not allow',
  HS_CONTROLLER_KEY: "the controller's signing key is not the one the agent pinned from its join token",
  HS_NOT_FOUND: 'an API object that does not exist',
  HS_CONFLICT: 'an API request that conflicts with current state',
  HS_TOO_LARGE: 'a request body or field over its size limit',
  HS_RATE_LIMITED: 'too many requests, connections or attempts from one address or with one token; try again later',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Where in a baseline file something is wrong. */
export interface SourceLocation {
  file: string;
  line: number;
  column: number;
  /** The field's path in the document, e.g. `spec.resources[3].mode`. */
  field?: string;
  /** The resource id, e.g. `file:/etc/motd`, when the field belongs to one. */
  resource?: string;
}

export interface HsErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  location?: SourceLocation;
  resource?: string;
}

export class HsError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly location: SourceLocation | undefined;
  readonly resource: string | undefined;

  constructor(code: ErrorCode, message: string, opts: HsErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'HsError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.location = opts.location;
    this.resource = opts.resource ?? opts.location?.resource;
  }

  /** `file:line:column: message (resource, field)` for humans. */
  describe(): string {
    const l = this.location;
    const where = l ? `${l.file}:${l.line}:${l.column}: ` : '';
    const what = [this.resource, l?.field].filter(Boolean).join(' ');
    return `${where}${this.message}${what ? ` (${what})` : ''} [${this.code}]`;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, retryable: this.retryable, location: this.location, resource: this.resource };
  }
}

/** A baseline that failed validation: every problem found, not only the first. */
export class BaselineInvalidError extends HsError {
  readonly issues: HsError[];
  constructor(file: string, issues: HsError[]) {
    super(issues[0]?.code ?? 'HS_BASELINE_INVALID', `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}`);
    this.name = 'BaselineInvalidError';
    this.issues = issues;
  }
  override describe(): string {
    return this.issues.map((i) => i.describe()).join('\n');
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), issues: this.issues.map((i) => i.toJSON()) };
  }
}

const ERRNO_CODES: Record<string, { code: ErrorCode; retryable: boolean }> = {
  EACCES: { code: 'HS_HOST_PERMISSION', retryable: true },
  EPERM: { code: 'HS_HOST_PERMISSION', retryable: true },
  EROFS: { code: 'HS_HOST_READ_ONLY', retryable: true },
  ENOSPC: { code: 'HS_HOST_DISK_FULL', retryable: true },
  EDQUOT: { code: 'HS_HOST_DISK_FULL', retryable: true },
  ENOENT: { code: 'HS_HOST_NOT_FOUND', retryable: true },
  ENOTDIR: { code: 'HS_HOST_NOT_FOUND', retryable: true },
  ELOOP: { code: 'HS_HOST_SYMLINK', retryable: true },
  ETIMEDOUT: { code: 'HS_HOST_TIMEOUT', retryable: true },
};

/** Wraps a Node system error (errno) into the vocabulary, naming the resource and what was being done. */
export function hostError(err: unknown, resource: string, doing: string): HsError {
  if (err instanceof HsError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const known = errno ? ERRNO_CODES[errno] : undefined;
  const detail = err instanceof Error ? err.message : String(err);
  return new HsError(known?.code ?? 'HS_HOST_IO', `${doing}: ${detail}`, {
    cause: err,
    retryable: known?.retryable ?? true,
    resource,
  });
}

export function errorMessage(err: unknown): string {
  if (err instanceof HsError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}
