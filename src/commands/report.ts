import { writeFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { renderCsv, renderHtmlReport, renderJson } from '../lib/deploy/report.js';
import { loadDeployment } from '../lib/deploy/stats.js';

export default class Report extends BaseCommand {
  static summary = 'Write a deployment report: a self-contained HTML page, or CSV, or JSON.';
  static description =
    `HTML: a timeline (nodes × time, coloured by step), per-step duration histograms and the OK/KO
table. The format comes from --format, else from the output file's extension.`;
  static examples = [
    '<%= config.bin %> report -o report.html',
    '<%= config.bin %> report -o steps.csv --deployment last',
  ];
  static flags = {
    config: configFlag,
    name: nameFlag,
    output: Flags.string({ char: 'o', required: true, description: 'Output file.' }),
    format: Flags.string({ options: ['html', 'csv', 'json'] }),
    deployment: Flags.string({ description: 'A deployment id, or "last".', default: 'last' }),
  };

  async run() {
    const { flags } = await this.parse(Report);
    const dep = await loadDeployment(await testbedName(flags), flags.deployment);
    const ext = flags.output.split('.').pop()?.toLowerCase();
    const format = flags.format ?? (ext === 'csv' || ext === 'json' ? ext : 'html');
    const text =
      format === 'csv' ? renderCsv(dep) : format === 'json' ? renderJson(dep) : renderHtmlReport(dep);
    await writeFile(flags.output, text);
    this.log(
      `Wrote ${format.toUpperCase()} report of ${dep.id} (${dep.nodes.length} nodes) to ${flags.output}`,
    );
    return { deployment: dep.id, format, file: flags.output, bytes: Buffer.byteLength(text) };
  }
}
