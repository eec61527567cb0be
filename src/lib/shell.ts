// Values put into command lines a remote shell reads (SSH exec requests).

/** Single-quoted for sh: any value stays one word, taken literally. */
export function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
