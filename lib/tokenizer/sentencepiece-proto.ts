/**
 * SentencePiece `.model` files: a protobuf `ModelProto` (sentencepiece_model.proto). Read fields:
 * pieces {piece 1, score 2, type 3}, trainer_spec {model_type 3, treat_whitespace_as_suffix 24,
 * byte_fallback 35, unk_id 40, bos_id 41, eos_id 42}, normalizer_spec {name 1,
 * precompiled_charsmap 2, add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5}.
 */
import { LowbitFormatError } from '../errors';
import { ByteCursor } from '../io/cursor';
import { BufferSource } from '../io/source';
import { TokenType, type LoadedTokenizer } from './model';
import { ProtoReader, WireType } from './protobuf';
import { SentencePieceModel } from './sentencepiece';
import { resolveBosId, resolveEosIds } from './special-ids';

const MODEL_TYPE_NAMES: Record<number, string> = { 1: 'unigram', 2: 'bpe', 3: 'word', 4: 'char' };
const MODEL_TYPE_BPE = 2;

interface TrainerSpec {
  modelType: number;
  whitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
}

/** Defaults of sentencepiece_model.proto for the fields a trainer_spec leaves out. */
const TRAINER_DEFAULTS: TrainerSpec = { modelType: 1, whitespaceAsSuffix: false, unkId: 0, bosId: 1, eosId: 2 };

interface NormalizerSpec {
  name: string;
  hasCharsMap: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** Reads a SentencePiece BPE model; unigram and other model types are a LowbitFormatError. */
export function readSentencePieceModel(file: string, bytes: Uint8Array): LoadedTokenizer {
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  let trainer: TrainerSpec | undefined;
  // Defaults of sentencepiece_model.proto, for a file without a normalizer_spec.
  let normalizer: NormalizerSpec = {
    name: '',
    hasCharsMap: false,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };

  const proto = new ProtoReader(new ByteCursor(new BufferSource(file, bytes)));
  proto.forEachField((field, wireType) => {
    if (field === 1 || field === 2 || field === 3) proto.expect(`ModelProto.${field}`, wireType, WireType.lengthDelimited);
    if (field === 1) {
      const piece = readPiece(proto.message());
      pieces.push(piece.piece);
      scores.push(piece.score);
      types.push(piece.type);
    } else if (field === 2) trainer = readTrainerSpec(proto.message(), trainer ?? TRAINER_DEFAULTS);
    else if (field === 3) normalizer = readNormalizerSpec(proto.message(), normalizer);
    else proto.skip(wireType);
  });

  const fail = (message: string): LowbitFormatError => new LowbitFormatError(file, message);
  if (pieces.length === 0) throw fail('no pieces: not a SentencePiece model');
  // Every trainer writes one, after the pieces: without it the file was cut short.
  if (trainer === undefined) throw fail('no trainer_spec: truncated, or not a SentencePiece model');
  if (trainer.modelType !== MODEL_TYPE_BPE) {
    const name = MODEL_TYPE_NAMES[trainer.modelType] ?? `type ${trainer.modelType}`;
    throw fail(`SentencePiece ${name} models are not supported (BPE only)`);
  }
  if (trainer.whitespaceAsSuffix) throw fail('treat_whitespace_as_suffix is not supported');
  const badType = types.findIndex((type) => !(type >= TokenType.normal && type <= TokenType.byte));
  if (badType >= 0) throw fail(`piece ${badType} has unknown type ${types[badType]}`);

  const idOrUndefined = (id: number): number | undefined => (id >= 0 && id < pieces.length ? id : undefined);
  const model = new SentencePieceModel({
    pieces,
    scores,
    types,
    unkId: idOrUndefined(trainer.unkId),
    spaceSymbol: normalizer.escapeWhitespaces ? '▁' : ' ',
    dummyPrefix: normalizer.addDummyPrefix ? 'always' : 'none',
    removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
    normalize: normalizationOf(file, normalizer),
  });
  return {
    model,
    bosId: resolveBosId(model, idOrUndefined(trainer.bosId)),
    eosIds: resolveEosIds(model, [idOrUndefined(trainer.eosId)]),
  };
}

function readPiece(proto: ProtoReader): { piece: string; score: number; type: number } {
  const piece = { piece: '', score: 0, type: TokenType.normal as number };
  proto.forEachField((field, wireType) => {
    if (field === 1 && wireType === WireType.lengthDelimited) piece.piece = proto.string();
    else if (field === 2 && wireType === WireType.fixed32) piece.score = proto.float();
    else if (field === 3 && wireType === WireType.varint) piece.type = proto.int32();
    else proto.skip(wireType);
  });
  return piece;
}

function readTrainerSpec(proto: ProtoReader, defaults: TrainerSpec): TrainerSpec {
  const spec = { ...defaults };
  proto.forEachField((field, wireType) => {
    if (wireType !== WireType.varint) return proto.skip(wireType);
    if (field === 3) spec.modelType = proto.int32();
    else if (field === 24) spec.whitespaceAsSuffix = proto.bool();
    else if (field === 40) spec.unkId = proto.int32();
    else if (field === 41) spec.bosId = proto.int32();
    else if (field === 42) spec.eosId = proto.int32();
    else proto.skip(wireType);
  });
  return spec;
}

function readNormalizerSpec(proto: ProtoReader, defaults: NormalizerSpec): NormalizerSpec {
  const spec = { ...defaults };
  proto.forEachField((field, wireType) => {
    if (field === 1 && wireType === WireType.lengthDelimited) spec.name = proto.string();
    else if (field === 2 && wireType === WireType.lengthDelimited) spec.hasCharsMap = proto.skipBytes() > 0;
    else if (field === 3 && wireType === WireType.varint) spec.addDummyPrefix = proto.bool();
    else if (field === 4 && wireType === WireType.varint) spec.removeExtraWhitespaces = proto.bool();
    else if (field === 5 && wireType === WireType.varint) spec.escapeWhitespaces = proto.bool();
    else proto.skip(wireType);
  });
  return spec;
}

/**
 * The text normalization a model asks for. Its precompiled character map is approximated by
 * Unicode NFKC (what the `nmt_nfkc` / `nfkc` maps are built from); an empty map is the identity.
 */
function normalizationOf(file: string, spec: NormalizerSpec): ((text: string) => string) | undefined {
  if (!spec.hasCharsMap || spec.name === 'identity') return undefined;
  if (/^(nmt_)?nfkc$/.test(spec.name)) return (text) => text.normalize('NFKC');
  if (/^(nmt_)?nfkc_cf$/.test(spec.name)) return (text) => text.normalize('NFKC').toLowerCase();
  throw new LowbitFormatError(file, `normalizer '${spec.name}' is not supported`, 'normalizer_spec');
}
