// What the portal uses of typage (age-encryption), re-exported for the bundle.
export { Decrypter, Encrypter, generateX25519Identity, identityToRecipient, webauthn } from "age-encryption";
