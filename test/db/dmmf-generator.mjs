// A Prisma generator that writes the schema's datamodel as Prisma itself reads it (its DMMF) to the
// generator's `output` file, so tests compare the database with Prisma's reading of schema.prisma.
import { writeFileSync } from 'node:fs';
import process from 'node:process';
import { createInterface } from 'node:readline';

const respond = (id, result) => process.stderr.write(`${JSON.stringify({ jsonrpc: '2.0', id, result })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, params } = JSON.parse(line);
  if (method === 'getManifest') respond(id, { manifest: { prettyName: 'DMMF dump' } });
  if (method === 'generate') {
    writeFileSync(params.generator.output.value, JSON.stringify(params.dmmf.datamodel, null, 1));
    respond(id, null);
  }
});
