// The `lc3-pusher` command line: serve, transcode, encode.
import { stat } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { transcodeDir } from './codec/batch.js';
import { encodeFile, transcodeFile } from './codec/transcode-file.js';

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Progress bar sink; a no-op when not attached to a terminal. */
  progress?: (done: number, total: number) => void;
}

function parseIntArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

export function buildCli(io: CliIo): Command {
  const program = new Command('lc3-pusher')
    .description('Live-audio ingest for wearables (LC3/PCM over WebSockets)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });

  program
    .command('transcode')
    .description('decode IN.lc3 to OUT.wav, or every .lc3 under DIR into OUTDIR (on all cores)')
    .argument('<in>', '.lc3 file or directory')
    .argument('<out>', '.wav file or output directory')
    .option('--threads <n>', 'pool threads for a directory', parseIntArg('--threads'))
    .action(async (input: string, output: string, opts: { threads?: number }) => {
      if ((await stat(input)).isDirectory()) {
        const r = await transcodeDir(input, output, {
          ...(opts.threads ? { threads: opts.threads } : {}),
          onProgress: (p) => io.progress?.(p.done, p.total),
        });
        for (const f of r.failed) io.err(`${f.input}: ${f.error}`);
        const seconds = r.ok.reduce((s, x) => s + x.seconds, 0);
        io.out(`transcoded ${r.ok.length} file(s), ${seconds.toFixed(1)} s of audio, ${r.failed.length} failed`);
        if (r.failed.length) process.exitCode = 1;
        return;
      }
      const r = await transcodeFile(input, output);
      io.out(`${output}: ${r.frames} frames, ${r.seconds.toFixed(2)} s${r.concealed ? `, ${r.concealed} corrupt frame(s) concealed` : ''}`);
    });

  program
    .command('encode')
    .description('encode a mono 16-bit WAV to .lc3')
    .argument('<in>', 'input .wav')
    .argument('<out>', 'output .lc3')
    .requiredOption('--bitrate <bps>', 'bitrate in bits per second (e.g. 24000)', parseIntArg('--bitrate'))
    .addOption(new Option('--frame-ms <ms>', 'frame duration').choices(['7.5', '10']).default('10'))
    .action(async (input: string, output: string, opts: { bitrate: number; frameMs: string }) => {
      const r = await encodeFile(input, output, { bitrate: opts.bitrate, frameUs: Number(opts.frameMs) * 1000 });
      io.out(`${output}: ${r.bytes} bytes`);
    });

  program
    .command('serve')
    .description('run the ingest service (configuration from the environment; see README)')
    .action(async () => {
      const { serveFromEnv } = await import('./serve.js');
      await serveFromEnv();
    });

  return program;
}

/** Runs the CLI; returns the exit code (errors become one clear line, never a stack trace). */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const program = buildCli(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message: string };
    if (e.code?.startsWith('commander.')) return e.exitCode ?? 1; // commander already printed it
    io.err(`lc3-pusher: ${e.message}`);
    return 1;
  }
}
