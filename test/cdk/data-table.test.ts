import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { createDataTable } from '../../lib/constructs/data-table.ts';
import { ENVIRONMENTS_DIR } from '../../lib/repo.ts';
import { loadEnvironmentFile } from '../../src/config/load.ts';
import type { TableDefinition } from '../../src/infra/resources.ts';

const BASE: TableDefinition = {
  id: 'Things',
  localName: 'dmp-local-things',
  partitionKey: { name: 'pk', type: 'S' },
  envVar: 'THINGS_TABLE_NAME',
};

function tableOf(definition: TableDefinition): Record<string, unknown> {
  const stack = new Stack(new App(), 'Tables');
  createDataTable(stack, definition, loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json')));
  const [table] = Object.values(Template.fromStack(stack).findResources('AWS::DynamoDB::GlobalTable'));
  return table!['Properties'] as Record<string, unknown>;
}

describe('createDataTable', () => {
  it.each(['NEW_AND_OLD_IMAGES', 'NEW_IMAGE', 'OLD_IMAGE', 'KEYS_ONLY'] as const)(
    'turns on a %s stream when the definition asks for one',
    (stream) => {
      expect(tableOf({ ...BASE, stream })['StreamSpecification']).toEqual({ StreamViewType: stream });
    },
  );

  it('has no stream otherwise', () => {
    expect(tableOf(BASE)['StreamSpecification']).toBeUndefined();
  });
});
