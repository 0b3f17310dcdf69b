// A policy's YAML, read by the full parser only (the `yaml` package, through lib/baseline's reader) into the YamlDoc the
// shared issue list locates problems with. Baselines go through a quick reader first because 10,000 resources must load
// fast; a policy is a page of rules, and that quick reader takes time exponential in the length of some plain scalars
// ending in ':' (`name: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx:` takes seconds), so policies do not use it.
import { HsError } from '../errors.js';
import type { Detail, Locator, Path, Pos, YamlDoc, YNode } from '../baseline/yaml-doc.js';
import { readFull } from '../baseline/yaml-full.js';

export function readPolicyYaml(text: string, file: string): YamlDoc {
  const full = readFull(text);
  if ('syntax' in full) {
    const issues = full.syntax.map(
      (e) =>
        new HsError('HS_POLICY_PARSE', e.message.replace(/^a baseline file holds one YAML document/, 'a policy file holds one YAML document'), {
          location: { file, line: e.line, column: e.column },
        }),
    );
    const nowhere = locator({ line: 1, column: 1 });
    return { value: undefined, readable: false, issues, reader: 'full', keys: nowhere, hasDuplicates: false, detail: () => ({ locator: nowhere, duplicates: [] }) };
  }
  const detail: Detail = { locator: locator(full.root), duplicates: full.duplicates };
  return { value: full.value, readable: true, issues: [], reader: 'full', keys: detail.locator, hasDuplicates: full.duplicates.length > 0, detail: () => detail };
}

function locator(root: YNode): Locator {
  return {
    keyPos: (path) => {
      const last = path[path.length - 1];
      if (last === undefined) return root;
      const parent = nodeAt(root, path.slice(0, -1));
      return typeof last === 'number' ? parent?.items?.[last] : parent?.entries?.get(last)?.key;
    },
    valuePos: (path): Pos | undefined => nodeAt(root, path),
    raw: (path) => nodeAt(root, path)?.raw,
  };
}

function nodeAt(root: YNode, path: Path): YNode | undefined {
  let node: YNode | undefined = root;
  for (const seg of path) {
    if (!node) return undefined;
    node = typeof seg === 'number' ? node.items?.[seg] : node.entries?.get(seg)?.node;
  }
  return node;
}
