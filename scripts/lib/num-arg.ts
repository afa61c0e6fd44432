// `--NAME N` from the command line as a positive number (the fault scripts' options).

/** The value after `--name` in argv, or `dflt` when absent; anything but a positive number throws. */
export function numArg(name: string, dflt: number, argv: readonly string[] = process.argv): number {
  const i = argv.indexOf(`--${name}`);
  const v = i > 0 ? Number(argv[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${argv[i + 1]}`);
  return v;
}
