// Prints the README's "Configuration" table from the settings table (src/config/settings.ts).
//   npx tsx scripts/config-table.ts            print it (markdown)
//   npx tsx scripts/config-table.ts --write    replace it between the markers in README.md
//   npx tsx scripts/config-table.ts --check    exit 1 when README.md is out of date
// (README.md of the working directory: run it from the repository root.)
import { readFileSync, writeFileSync } from 'node:fs';
import { configTableMarkdown, replaceTable, tableIn } from '../src/config/doc.js';

const readme = 'README.md';
const mode = process.argv[2];
const table = configTableMarkdown();
if (mode === undefined) {
  console.log(table);
} else if (mode === '--write') {
  writeFileSync(readme, replaceTable(readFileSync(readme, 'utf8'), table));
  console.log(`${readme}: configuration table written (${table.split('\n').length - 2} settings)`);
} else if (mode === '--check') {
  if (tableIn(readFileSync(readme, 'utf8')) !== table) {
    console.error(`${readme}: the configuration table is out of date; run npx tsx scripts/config-table.ts --write`);
    process.exit(1);
  }
} else {
  console.error(`config-table: unknown argument ${JSON.stringify(mode)} (expected --write or --check)`);
  process.exit(2);
}
