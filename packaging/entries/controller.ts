// Entry of the homeostat-controller single executable: the operator CLI when called as `homeostatctl` (a link) or `homeostat-controller ctl ...`, else the controller.
import * as path from 'node:path';

const asCtl = path.basename(process.argv0) === 'homeostatctl';
if (asCtl || process.argv[2] === 'ctl') {
  // The CLI parses argv[2...] as its own arguments.
  if (!asCtl) process.argv.splice(2, 1);
  void import('../../controller/ctl/main.js');
} else {
  void import('../../controller/main.js');
}
