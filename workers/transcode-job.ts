// Piscina task: one stateless file conversion (.lc3 → .wav). Runs on a pool thread, so it only
// touches the files it is given; the logic lives in src/codec (tested directly).
import { transcodeFile, type TranscodeResult } from '../src/codec/transcode-file.js';

export default function run(task: { input: string; output: string }): Promise<TranscodeResult> {
  return transcodeFile(task.input, task.output);
}
