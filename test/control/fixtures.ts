import { policy, registry } from '../ir/fixtures.js';

/** One listener and one model, `fraud`, served at its champion alias: the controller tests' inputs. */
export const FRAUD_POLICY = policy({
  'gateway.yaml': 'kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\n',
  'model.yaml': 'kind: Model\nname: fraud\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion } }\n',
});

/** `fraud` with versions 1 and 2, its champion at `version`. */
export const registryWithChampion = (version: string) =>
  registry({
    fraud: {
      versions: { '1': { tags: { 'flowgate.address': '10.0.0.1:8080' } }, '2': { tags: { 'flowgate.address': '10.0.0.2:8080' } } },
      aliases: { champion: version },
    },
  });
