// How a benchmark script ends: exit 0 when `main` finishes, else one line saying what went wrong
// and exit 1. The benchmarks' own finally blocks have stopped their child processes by then.
export async function runMain(main: () => Promise<void>, log: (line: string) => void): Promise<never> {
  try {
    await main();
    process.exit(0);
  } catch (err) {
    log(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
