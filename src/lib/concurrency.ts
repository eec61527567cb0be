// Bounded parallelism: at most `limit` of `items` in flight at once (windows of SSH commands,
// host commands, probes).
export async function eachLimited<T>(
  items: T[],
  limit: number,
  f: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await f(items[i], i);
      }
    }),
  );
}
