// The README's "Configuration" table, made from the settings table (as `serve --help` is), and
// the markers it lives between. scripts/config-table.ts writes it; test/config-readme.test.ts
// fails when README and the table disagree.
import { defaultDocOf, flagOf, SETTING_NAMES, settingOf } from './settings.js';

export const TABLE_BEGIN = '<!-- config-table:begin -->';
export const TABLE_END = '<!-- config-table:end -->';

/** A markdown table cell: pipes escaped, backticks kept from breaking the code span. */
function cell(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function configTableMarkdown(): string {
  const rows = ['| env | flag | default | accepted | meaning |', '|---|---|---|---|---|'];
  for (const name of SETTING_NAMES) {
    const s = settingOf(name);
    const d = s.defaultDoc ? s.defaultDoc : defaultDocOf(name) === 'unset' ? 'unset' : `\`${defaultDocOf(name)}\``;
    const accepted = s.kind.kind === 'text' && !s.kind.pattern ? '' : s.kind.accepted;
    rows.push(`| \`${name}\` | \`${flagOf(name)}\` | ${cell(d)} | ${cell(accepted)} | ${cell(s.help)}${s.secret ? ' (secret)' : ''} |`);
  }
  return rows.join('\n');
}

/** `text` with what lies between the markers replaced by `table`; throws when a marker is missing. */
export function replaceTable(text: string, table: string): string {
  const a = text.indexOf(TABLE_BEGIN);
  const b = text.indexOf(TABLE_END);
  if (a < 0 || b < a) throw new Error(`README: the markers ${TABLE_BEGIN} … ${TABLE_END} are missing`);
  return `${text.slice(0, a + TABLE_BEGIN.length)}\n${table}\n${text.slice(b)}`;
}

/** The table now between the markers ('' when they are missing). */
export function tableIn(text: string): string {
  const a = text.indexOf(TABLE_BEGIN);
  const b = text.indexOf(TABLE_END);
  return a < 0 || b < a ? '' : text.slice(a + TABLE_BEGIN.length, b).trim();
}
