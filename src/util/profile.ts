// CPU profile of the calling thread with node:inspector (works inside worker threads too):
// the result is a .cpuprofile JSON that Chrome DevTools and speedscope open.
import { Session } from 'node:inspector';

export async function cpuProfile(seconds: number): Promise<string> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  try {
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 500 });
    await post('Profiler.start');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    return JSON.stringify(profile);
  } finally {
    session.disconnect();
  }
}
