/* Plain C ABI of the SentencePiece shim library (loaded via dlmopen into its own namespace). */
#ifndef BLOCKSERVE_BASE_SPM_SHIM_SPM_SHIM_H_
#define BLOCKSERVE_BASE_SPM_SHIM_SPM_SHIM_H_

/*
 * libblockserve_spm_shim.so wraps Debian's libsentencepiece (which embeds and exports its own
 * protobuf 3.14) behind this C-only interface. The library is meant to be loaded with
 * dlmopen(LM_ID_NEWLM, ...) so that it, libsentencepiece and their libstdc++/libc copies live in a
 * private link-map namespace. Consequences for callers:
 *
 *  - Only C types cross the boundary. No C++ exception ever escapes a shim function.
 *  - Memory returned through an out-parameter (ids, text, pieces, error messages) was allocated by
 *    the shim's own malloc and MUST be released with spm_shim_free(); never with the caller's
 *    free()/delete.
 *  - Status codes: 0 means OK; any other value is a canonical status code with the same numbering
 *    as absl::StatusCode (3 invalid argument, 5 not found, 9 failed precondition, 11 out of range,
 *    13 internal, ...).
 *  - Error messages: functions taking `char** error_out` store a NUL-terminated, shim-allocated
 *    message there on failure (release with spm_shim_free) and NULL on success. `error_out` may be
 *    NULL when the caller does not want the message. Errors are reported per call, so there is no
 *    shared "last error" state and concurrent calls cannot clobber each other's messages.
 *  - Thread safety: the const processor functions (encode, decode, piece/id lookups) may be called
 *    concurrently on one processor. Training functions serialize themselves internally.
 */

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SPM_SHIM_EXPORT __attribute__((visibility("default")))
#else
#define SPM_SHIM_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or a semantic of this header changes. */
#define SPM_SHIM_ABI_VERSION 1

/* Bits returned by spm_shim_id_flags(). */
#define SPM_SHIM_ID_UNKNOWN 1
#define SPM_SHIM_ID_CONTROL 2
#define SPM_SHIM_ID_BYTE 4
#define SPM_SHIM_ID_UNUSED 8

/* A loaded SentencePiece model (opaque). */
typedef struct spm_shim_processor spm_shim_processor;

/* Returns SPM_SHIM_ABI_VERSION as compiled into the shim; callers compare it with their own. */
SPM_SHIM_EXPORT int32_t spm_shim_abi_version(void);

/* Releases memory returned by any shim function. NULL is a no-op. */
SPM_SHIM_EXPORT void spm_shim_free(void* ptr);

/*
 * Trains a model from a sentencepiece command-line string, e.g.
 * "--input=a.txt --model_prefix=m --vocab_size=8000". sentencepiece splits this string on single
 * spaces with no quoting, so values containing spaces cannot be expressed; use spm_shim_train_kv.
 * Training is deterministic: sentencepiece samples input_sentence_size sentences with a fixed
 * internal seed (SetRandomGeneratorSeed does not affect it in 0.1.97).
 */
SPM_SHIM_EXPORT int32_t spm_shim_train_args(const char* args, char** error_out);

/*
 * Trains a model from `num_flags` (key, value) pairs of NUL-terminated strings, e.g.
 * {"input", "a.txt"}, {"vocab_size", "8000"}; keys without the leading "--". Values are passed
 * verbatim (spaces allowed); repeated fields such as "input" are comma-separated by sentencepiece.
 * A key given twice is an error.
 */
SPM_SHIM_EXPORT int32_t spm_shim_train_kv(const char* const* keys, const char* const* values,
                                          size_t num_flags, char** error_out);

/* Loads a .model file; on success *out is a new processor (release: spm_shim_processor_free). */
SPM_SHIM_EXPORT int32_t spm_shim_load_file(const char* path, spm_shim_processor** out,
                                           char** error_out);

/* Loads a model from the bytes of a serialized ModelProto (the contents of a .model file). */
SPM_SHIM_EXPORT int32_t spm_shim_load_serialized(const char* data, size_t len,
                                                 spm_shim_processor** out, char** error_out);

/* Destroys a processor. NULL is a no-op. */
SPM_SHIM_EXPORT void spm_shim_processor_free(spm_shim_processor* processor);

/*
 * Encodes `len` bytes of `text` into ids. On success *ids_out is a shim-allocated array of
 * *num_ids_out ids (NULL when zero ids). Invalid UTF-8 is not an error: sentencepiece replaces
 * every invalid byte with U+FFFD.
 */
SPM_SHIM_EXPORT int32_t spm_shim_encode(const spm_shim_processor* processor, const char* text,
                                        size_t len, int32_t** ids_out, size_t* num_ids_out,
                                        char** error_out);

/*
 * Decodes `num_ids` ids into text. On success *text_out is a shim-allocated buffer of *len_out
 * bytes plus a terminating NUL. Any id outside [0, vocab size) is an out-of-range error (11).
 */
SPM_SHIM_EXPORT int32_t spm_shim_decode(const spm_shim_processor* processor, const int32_t* ids,
                                        size_t num_ids, char** text_out, size_t* len_out,
                                        char** error_out);

/* Returns the id of the piece `piece[0, len)`, or the unknown id when it is not in the vocab. */
SPM_SHIM_EXPORT int32_t spm_shim_piece_to_id(const spm_shim_processor* processor, const char* piece,
                                             size_t len);

/*
 * Stores a shim-allocated copy of the piece of `id` in *piece_out (*len_out bytes plus a NUL).
 * An id outside [0, vocab size) is an out-of-range error (11).
 */
SPM_SHIM_EXPORT int32_t spm_shim_id_to_piece(const spm_shim_processor* processor, int32_t id,
                                             char** piece_out, size_t* len_out, char** error_out);

/* Number of pieces in the vocabulary. */
SPM_SHIM_EXPORT int32_t spm_shim_vocab_size(const spm_shim_processor* processor);

/* Stores the special ids (-1 where the model has none). Any pointer may be NULL. */
SPM_SHIM_EXPORT void spm_shim_special_ids(const spm_shim_processor* processor, int32_t* unk_id,
                                          int32_t* bos_id, int32_t* eos_id, int32_t* pad_id);

/* Returns an OR of SPM_SHIM_ID_* bits for `id`, or -1 when `id` is out of range. */
SPM_SHIM_EXPORT int32_t spm_shim_id_flags(const spm_shim_processor* processor, int32_t id);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BLOCKSERVE_BASE_SPM_SHIM_SPM_SHIM_H_ */
