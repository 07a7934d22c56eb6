// Everything SDQL_MODELS_DIR holds as models: ONNX folders and single-file checkpoints, by id. An id
// taken by both a folder and a checkpoint is an error on both, named, rather than a silent choice.
import { CHECKPOINT_EXTENSION, checkpointFiles, findClipVocab, inspectCheckpointModel } from './convert/checkpoint-model.ts';
import { scanModelFolders, type ModelFolderInfo } from './model-folder.ts';

export async function scanModelsDir(modelsDir: string): Promise<ModelFolderInfo[]> {
  const folders = await scanModelFolders(modelsDir);
  const files = await checkpointFiles(modelsDir);
  const vocabDir = files.length ? await findClipVocab(modelsDir, folders) : undefined;
  const checkpoints = await Promise.all(files.map((file) => inspectCheckpointModel(file, vocabDir)));
  const folderIds = new Set(folders.map((f) => f.id));
  const clashes = new Set(checkpoints.filter((c) => folderIds.has(c.id)).map((c) => c.id));
  const clash = (id: string) => `the id ${id} is taken by both the folder ${id}/ and the checkpoint ${id}${CHECKPOINT_EXTENSION}: rename or remove one`;
  const all = [
    ...folders.map((f) => (clashes.has(f.id) ? { ...f, supported: false, error: clash(f.id) } : f)),
    // The checkpoint is listed under its file name, so that both entries can be told apart.
    ...checkpoints.map((c) => (clashes.has(c.id) ? { ...c, id: `${c.id}${CHECKPOINT_EXTENSION}`, name: `${c.id}${CHECKPOINT_EXTENSION}`, supported: false, error: clash(c.id) } : c)),
  ];
  return all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
