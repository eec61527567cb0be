// Values put into command lines a remote shell reads (SSH exec requests), and the reverse for
// the emulated nodes that stand in for that shell.

/** Single-quoted for sh: any value stays one word, taken literally. */
export function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * A command line split as sh splits plain words, '...', "..." and backslashes (no expansion), or
 * null when it holds anything else a shell would act on (`;`, `|`, `$`, redirections, a line
 * break outside quotes, an unterminated quote): an emulated node runs simple commands only.
 */
export function shellWords(line: string): string[] | null {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) return null;
      cur += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        // inside double quotes a backslash escapes only these (and joins lines); else it stays
        if (line[j] === '\\' && line[j + 1] === '\n') j++;
        else if (line[j] === '\\' && j + 1 < line.length && '$`"\\'.includes(line[j + 1])) cur += line[++j];
        else if (line[j] === '$' || line[j] === '`') return null;
        else cur += line[j];
      }
      if (j >= line.length) return null;
      i = j;
      inWord = true;
    } else if (c === '\\') {
      if (i + 1 >= line.length) return null;
      // a backslash before a line break joins the lines
      if (line[++i] !== '\n') {
        cur += line[i];
        inWord = true;
      }
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else if (';&|<>`$()\n\r'.includes(c) || (c === '#' && !inWord)) {
      return null;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}
