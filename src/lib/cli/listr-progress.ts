// listr2 rendering of Progress, always on stderr so stdout stays clean for --json.
import { Listr, ListrLogger, ProcessOutput } from 'listr2';
import type { Progress } from '../progress.js';

export function listrProgress(): Progress {
  const processOutput = new ProcessOutput(process.stderr, process.stderr);
  const logger = new ListrLogger({ processOutput });
  const renderer = process.stderr.isTTY ? 'default' : 'simple';
  return {
    async step(title, run) {
      let result: Awaited<ReturnType<typeof run>> | undefined;
      const list = new Listr(
        [
          {
            title,
            task: async (_ctx, task) => {
              const started = Date.now();
              let last = '';
              result = await run({
                status: (text) => {
                  // Polls repeat the same counts; show a line only when something changed.
                  if (text === last) return;
                  last = text;
                  task.output = `${text} (${Math.round((Date.now() - started) / 1000)} s)`;
                },
              });
            },
          },
        ],
        {
          renderer,
          fallbackRenderer: 'simple',
          rendererOptions: { logger },
          fallbackRendererOptions: { logger },
          exitOnError: true,
        },
      );
      await list.run();
      return result as Awaited<ReturnType<typeof run>>;
    },
  };
}
