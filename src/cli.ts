// The `lc3-pusher` command line: serve, config, token, transcode, encode.
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { transcodeDir } from './codec/batch.js';
import { encodeFile, transcodeFile } from './codec/transcode-file.js';
import { configCommand } from './cli/config-command.js';
import { addSettingOptions, overridesFrom } from './cli/settings-options.js';
import { tokenCommand } from './cli/token.js';
import { loadConfig } from './config.js';

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Progress bar sink; a no-op when not attached to a terminal. */
  progress?: ((done: number, total: number) => void) | undefined;
}

/** An error already phrased for the user (file name first). */
class CliError extends Error {}

/**
 * One line for any error, naming the file: Node's "ENOENT: no such file or directory, open 'x'"
 * becomes "x: no such file or directory"; other errors get `file` in front.
 */
function describe(err: Error, file: string): string {
  if (err instanceof CliError) return err.message;
  const e = err as NodeJS.ErrnoException;
  let what = err.message;
  if (typeof e.code === 'string' && typeof e.syscall === 'string') {
    what = what.replace(/^\w+: /, '').replace(/, \w+ '.*'$/s, '');
    if (e.code === 'EISDIR') what = 'is a directory';
    // mkdir -p fails with EEXIST when a file stands where a directory must go.
    if (e.code === 'EEXIST' && e.syscall === 'mkdir') what = 'not a directory';
  }
  const where = e.path ?? file;
  return where ? `${where}: ${what}` : what;
}

async function statOrNull(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function parseIntArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

export function buildCli(io: CliIo, setExitCode: (code: number) => void): Command {
  const program = new Command('lc3-pusher')
    .description('Live-audio ingest for wearables (LC3/PCM over WebSockets)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.trimEnd()),
      writeErr: (s) => io.err(s.trimEnd()),
      // "error: unknown option '--prot'\n(Did you mean --port?)" as one line, like every other error.
      outputError: (s, write) => write(s.trimEnd().replace(/\n+/g, ' ')),
    });

  program
    .command('transcode')
    .description('decode IN.lc3 to OUT.wav, or every .lc3 under DIR into OUTDIR (on all cores)')
    .argument('<in>', '.lc3 file or directory')
    .argument('<out>', '.wav file (or a directory to put it in), or the output directory')
    .option('--threads <n>', 'pool threads for a directory', parseIntArg('--threads'))
    .action(async (input: string, output: string, opts: { threads?: number }) => {
      const inStat = await statOrNull(input);
      if (!inStat) throw new CliError(`${input}: no such file or directory`);
      const outStat = await statOrNull(output);
      if (inStat.isDirectory()) {
        if (outStat && !outStat.isDirectory()) throw new CliError(`${output}: not a directory (the input ${input} is one)`);
        const r = await transcodeDir(input, output, {
          ...(opts.threads ? { threads: opts.threads } : {}),
          onProgress: (p) => io.progress?.(p.done, p.total),
        });
        for (const f of r.failed) io.err(`${f.input}: ${f.error}`);
        const seconds = r.ok.reduce((s, x) => s + x.seconds, 0);
        const total = r.ok.length + r.failed.length;
        if (total === 0) io.out(`no .lc3 files under ${input}`);
        else io.out(`transcoded ${r.ok.length} file(s), ${seconds.toFixed(1)} s of audio, ${r.failed.length} failed`);
        if (r.failed.length) setExitCode(1);
        return;
      }
      const target = outStat?.isDirectory() ? join(output, basename(input).replace(/(\.lc3)?$/i, '.wav')) : output;
      let r;
      try {
        r = await transcodeFile(input, target);
      } catch (err) {
        throw new CliError(describe(err as Error, input));
      }
      const notes: string[] = [];
      if (r.concealed) notes.push(`${r.concealed} corrupt frame(s) concealed`);
      if (r.ignored) notes.push(`${r.ignored} frame(s) past the header's sample count ignored`);
      io.out(`${target}: ${r.frames} frames, ${r.seconds.toFixed(2)} s${notes.map((n) => `, ${n}`).join('')}`);
    });

  program
    .command('encode')
    .description('encode a mono 16-bit PCM WAV (8, 16, 24, 32 or 48 kHz) to .lc3')
    .argument('<in>', 'input .wav')
    .argument('<out>', 'output .lc3')
    .requiredOption('--bitrate <bps>', 'bitrate in bits per second (e.g. 32000)', parseIntArg('--bitrate'))
    .addOption(new Option('--frame-ms <ms>', 'frame duration').choices(['7.5', '10']).default('10'))
    .action(async (input: string, output: string, opts: { bitrate: number; frameMs: string }) => {
      let r;
      try {
        r = await encodeFile(input, output, { bitrate: opts.bitrate, frameUs: Number(opts.frameMs) * 1000 });
      } catch (err) {
        throw new CliError(describe(err as Error, input));
      }
      io.out(`${output}: ${r.frames} frames, ${r.bytes} bytes`);
    });

  // Settings are parsed and checked before the service module loads: a bad value costs one line
  // and exit 1, not a half-started service.
  const serve = program
    .command('serve')
    .description('run the ingest service; every setting from its environment variable or flag (flags win)');
  addSettingOptions(serve).action(async (opts: Record<string, unknown>) => {
    const config = loadConfig(process.env, overridesFrom(opts));
    const { serveFromEnv } = await import('./serve.js');
    await serveFromEnv(process.env, config);
  });

  // addCommand (unlike .command) does not pass on exitOverride and the output sinks.
  for (const cmd of [tokenCommand(io.out), configCommand(io.out)]) program.addCommand(cmd.copyInheritedSettings(program));

  return program;
}

/** Runs the CLI; returns the exit code (errors become one clear line, never a stack trace). */
export async function main(argv: string[], io: CliIo): Promise<number> {
  let code = 0;
  const program = buildCli(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode; // commander printed it
    io.err(`lc3-pusher: ${describe(err as Error, '')}`);
    return 1;
  }
}
