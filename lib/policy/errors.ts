// The error a policy that fails validation raises: every problem found, each located, like BaselineInvalidError.
import { HsError } from '../errors.js';

export class PolicyInvalidError extends HsError {
  readonly issues: HsError[];
  constructor(file: string, issues: HsError[]) {
    super(issues[0]?.code ?? 'HS_POLICY_INVALID', `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}`);
    this.name = 'PolicyInvalidError';
    this.issues = issues;
  }
  override describe(): string {
    return this.issues.map((i) => i.describe()).join('\n');
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), issues: this.issues.map((i) => i.toJSON()) };
  }
}
