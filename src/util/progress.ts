// Terminal progress bar for batch jobs (cli-progress), shown only on an interactive stderr.
import cliProgress from 'cli-progress';

export function progressBar(stream: NodeJS.WriteStream = process.stderr): ((done: number, total: number) => void) | undefined {
  if (!stream.isTTY) return undefined;
  let bar: cliProgress.SingleBar | undefined;
  return (done, total) => {
    if (!bar) {
      bar = new cliProgress.SingleBar({ stream, format: 'transcode [{bar}] {value}/{total} files' }, cliProgress.Presets.shades_classic);
      bar.start(total, 0);
    }
    bar.update(done);
    if (done >= total) bar.stop();
  };
}
