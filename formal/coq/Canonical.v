(** * Canonical signing of a PCS (PROTOCOL.md section 2), modelled byte for byte.

    The model follows [flk-core/src/canon.rs]:
    - [round9] is [canon::round9] on the shortest round-trip decimal of a double (sign,
      digits as an integer, decimal exponent): half-up (away from zero) at the 9th decimal,
      the sign kept (so [-4e-10] rounds to [-0.0]);
    - [payload] is [canon::canonical_payload_into]: the 8 signed keys in code-point order,
      [,] and [:] without whitespace, the epoch in plain decimal ([canon::write_int]), strings
      escaped ASCII-only ([canon::write_json_string]: quote and backslash behind a backslash,
      the five short escapes n r t b f, every other code point outside 0x20..0x7e as a
      backslash-u escape of 4 lowercase hex digits, astral ones as a UTF-16 surrogate pair);
    - the text of a rounded double (Python [repr], [canon::write_py_float_round9]) is the
      section variable [repr], with the two properties Python's [repr] has: it round-trips
      (distinct rounded values within range give distinct text) and it never contains a comma;
    - SHA-256 and HMAC-SHA256 are section variables, collision resistant by hypothesis;
      signatures are checked in both HMAC modes ([keys.rs], [KeyMaterial::verify]).

    Bytes are [N] values (0..255); text is a list of Unicode scalar values ([N]). *)

From Coq Require Import Bool List NArith ZArith Lia String Ascii.
From Coq Require Import Numbers.DecimalNat.
Import ListNotations.
Open Scope N_scope.

(** ** Bytes of ASCII literals *)

Fixpoint lit (s : string) : list N :=
  match s with
  | EmptyString => []
  | String c s' => N_of_ascii c :: lit s'
  end.

(** ** Integers in plain decimal ([canon::write_int]) *)

Fixpoint uint_bytes (u : Decimal.uint) : list N :=
  match u with
  | Decimal.Nil => []
  | Decimal.D0 u => 48 :: uint_bytes u
  | Decimal.D1 u => 49 :: uint_bytes u
  | Decimal.D2 u => 50 :: uint_bytes u
  | Decimal.D3 u => 51 :: uint_bytes u
  | Decimal.D4 u => 52 :: uint_bytes u
  | Decimal.D5 u => 53 :: uint_bytes u
  | Decimal.D6 u => 54 :: uint_bytes u
  | Decimal.D7 u => 55 :: uint_bytes u
  | Decimal.D8 u => 56 :: uint_bytes u
  | Decimal.D9 u => 57 :: uint_bytes u
  end.

Definition int_bytes (n : nat) : list N := uint_bytes (Nat.to_uint n).

Example int_bytes_42 : int_bytes 42 = lit "42".
Proof. reflexivity. Qed.

(** ** JSON strings, ASCII only ([canon::write_json_string]) *)

(** A Unicode scalar value: a code point that is not a surrogate (Rust's [char]). *)
Definition scalar (c : N) : Prop := c < 1114112 /\ ~ (55296 <= c <= 57343).

Definition hexd (d : N) : N := if d <? 10 then 48 + d else 87 + d.

Definition u4 (x : N) : list N :=
  [92; 117; hexd (x / 4096 mod 16); hexd (x / 256 mod 16); hexd (x / 16 mod 16);
   hexd (x mod 16)].

Definition esc (c : N) : list N :=
  if c =? 34 then [92; 34]
  else if c =? 92 then [92; 92]
  else if c =? 10 then [92; 110]
  else if c =? 13 then [92; 114]
  else if c =? 9 then [92; 116]
  else if c =? 8 then [92; 98]
  else if c =? 12 then [92; 102]
  else if (32 <=? c) && (c <=? 126) then [c]
  else if c <? 65536 then u4 c
  else u4 (55296 + (c - 65536) / 1024) ++ u4 (56320 + (c - 65536) mod 1024).

Fixpoint esc_str (s : list N) : list N :=
  match s with
  | [] => []
  | c :: s' => esc c ++ esc_str s'
  end.

Definition json_string (s : list N) : list N := 34 :: esc_str s ++ [34].

Example escapes_like_the_spec :
  json_string [97; 34; 92; 47; 10; 13; 9; 8; 12; 1; 127; 233; 128512]
  = lit """a\""\\/\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00""".
Proof. vm_compute. reflexivity. Qed.

(** ** Numbers: 9-decimal rounding ([canon::round9]) *)

(** A double as its shortest round-trip decimal: [(-1)^neg * mag * 10^exp]. *)
Record dec := Dec { neg : bool; mag : N; exp : Z }.

(** Half-up at the 9th decimal: keep [mag / 10^k], add one when the dropped part is at least
    half of [10^k] (the first dropped digit is 5 or more). *)
Definition round9 (x : dec) : dec :=
  if (-9 <=? exp x)%Z then x
  else
    let p := 10 ^ Z.to_N (-9 - exp x) in
    let q := mag x / p in
    let rem := mag x mod p in
    Dec (neg x) (if p <=? 2 * rem then q + 1 else q) (-9).

(** A rounded value in units of [10^-9], with its sign: what the payload shows. *)
Definition nanos (x : dec) : bool * N :=
  (neg x, mag x * 10 ^ Z.to_N (exp x + 9)).

Example round9_ties_up : nanos (round9 (Dec false 1234567885 (-10))) = (false, 123456789).
Proof. reflexivity. Qed.
Example round9_small_down : nanos (round9 (Dec false 4 (-10))) = (false, 0).
Proof. reflexivity. Qed.
Example round9_small_up : nanos (round9 (Dec false 6 (-10))) = (false, 1).
Proof. reflexivity. Qed.
Example round9_negative_tie : nanos (round9 (Dec true 5 (-10))) = (true, 1).
Proof. reflexivity. Qed.
Example round9_negative_zero : nanos (round9 (Dec true 4 (-10))) = (true, 0).
Proof. reflexivity. Qed.
Example round9_carry : nanos (round9 (Dec false 9999999996 (-10))) = (false, 1000000000).
Proof. reflexivity. Qed.
Example round9_short_unchanged : round9 (Dec false 25 (-1)) = Dec false 25 (-1).
Proof. reflexivity. Qed.

Theorem rounding_idempotent : forall x, round9 (round9 x) = round9 x.
Proof.
  intros [s m e]. destruct (-9 <=? e)%Z eqn:He.
  - assert (R : round9 (Dec s m e) = Dec s m e)
      by (unfold round9; simpl; rewrite He; reflexivity).
    rewrite R. exact R.
  - set (y := round9 (Dec s m e)).
    assert (Ey : exp y = (-9)%Z) by (unfold y, round9; simpl; rewrite He; reflexivity).
    unfold round9 at 1. rewrite Ey. reflexivity.
Qed.

(** ** The PCS record and its signed subset *)

Record signed := Signed {
  s_pcs_id : list N; s_merkle_root : list N; s_epoch : nat; s_shard_id : list N;
  s_d_hat : dec; s_coh_star : dec; s_r : dec; s_budget : dec }.

(** Everything else a PCS carries (PROTOCOL.md section 1): not signed. *)
Record unsigned := Unsigned {
  u_schema : list N; u_version : list N; u_attempt : nat; u_sent_at : list N; u_seed : Z;
  u_scales : list nat; u_n_j : list (list N * Z); u_v_star : list dec; u_regime : list N;
  u_ft_degraded : option bool; u_ft_fallbacks : list (list N); u_sig : list N }.

Record pcs := Pcs { fields : signed; rest : unsigned }.

(** What the signature commits to: the signed fields, with the numbers as rounded. *)
Definition signed_view (f : signed) :=
  (s_pcs_id f, s_merkle_root f, s_epoch f, s_shard_id f,
   nanos (round9 (s_d_hat f)), nanos (round9 (s_budget f)),
   nanos (round9 (s_coh_star f)), nanos (round9 (s_r f))).

Section Signing.

(** Python [repr] of the double a rounded value parses to, given as sign and nanos. *)
Variable repr : bool -> N -> list N.

(** [repr] round-trips: below [10^15] nanos ([10^6] in value) the doubles nearest to two
    different multiples of [10^-9] differ (their spacing is below [2^-30]), and the shortest
    round-trip text of two different doubles differs; the sign is always shown, [-0.0]
    included. *)
Hypothesis repr_injective : forall s1 n1 s2 n2,
  n1 < 10 ^ 15 -> n2 < 10 ^ 15 -> repr s1 n1 = repr s2 n2 -> s1 = s2 /\ n1 = n2.

(** A number is digits, [.], [e], [+] and [-]: never a comma. *)
Hypothesis repr_no_comma : forall s n, ~ In 44 (repr s n).

Variable sha256 : list N -> list N.
Variable hmac_sha256 : list N -> list N -> list N.

(** Collision resistance, idealised as injectivity. *)
Hypothesis sha256_collision_resistant : forall a b, sha256 a = sha256 b -> a = b.
Hypothesis hmac_collision_resistant :
  forall key a b, hmac_sha256 key a = hmac_sha256 key b -> a = b.

Definition num_text (v : bool * N) : list N := let (s, n) := v in repr s n.

Definition number (x : dec) : list N := num_text (nanos (round9 x)).

(** [canon::canonical_payload_into]: keys in code-point order. *)
Definition payload (f : signed) : list N :=
  lit "{""D_hat"":" ++ number (s_d_hat f) ++
  lit ",""budget"":" ++ number (s_budget f) ++
  lit ",""coh_star"":" ++ number (s_coh_star f) ++
  lit ",""epoch"":" ++ int_bytes (s_epoch f) ++
  lit ",""merkle_root"":" ++ json_string (s_merkle_root f) ++
  lit ",""pcs_id"":" ++ json_string (s_pcs_id f) ++
  lit ",""r"":" ++ number (s_r f) ++
  lit ",""shard_id"":" ++ json_string (s_shard_id f) ++
  lit "}".

Definition canonical (p : pcs) : list N := payload (fields p).

Inductive hmac_mode := Digest | Payload.

Definition mac (mode : hmac_mode) (key msg : list N) : list N :=
  match mode with
  | Digest => hmac_sha256 key (sha256 msg)
  | Payload => hmac_sha256 key msg
  end.

Definition sign (mode : hmac_mode) (key : list N) (p : pcs) : list N :=
  mac mode key (canonical p).

Definition valid_signature (mode : hmac_mode) (key : list N) (p : pcs) (sig : list N) : Prop :=
  sig = mac mode key (canonical p).

(** A PCS whose strings are Unicode text and whose rounded numbers are below [10^6]. *)
Definition in_range (x : dec) : Prop := snd (nanos (round9 x)) < 10 ^ 15.

Definition well_formed (p : pcs) : Prop :=
  let f := fields p in
  Forall scalar (s_pcs_id f) /\ Forall scalar (s_merkle_root f) /\
  Forall scalar (s_shard_id f) /\
  in_range (s_d_hat f) /\ in_range (s_budget f) /\ in_range (s_coh_star f) /\
  in_range (s_r f).

(** *** Equal inputs give equal bytes *)

(** The payload as a function of the signed view alone. *)
Definition payload_of_view
  (v : list N * list N * nat * list N * (bool * N) * (bool * N) * (bool * N) * (bool * N))
  : list N :=
  let '(pcs_id, merkle_root, epoch, shard_id, d_hat, budget, coh_star, r) := v in
  lit "{""D_hat"":" ++ num_text d_hat ++
  lit ",""budget"":" ++ num_text budget ++
  lit ",""coh_star"":" ++ num_text coh_star ++
  lit ",""epoch"":" ++ int_bytes epoch ++
  lit ",""merkle_root"":" ++ json_string merkle_root ++
  lit ",""pcs_id"":" ++ json_string pcs_id ++
  lit ",""r"":" ++ num_text r ++
  lit ",""shard_id"":" ++ json_string shard_id ++
  lit "}".

Lemma payload_view : forall f, payload f = payload_of_view (signed_view f).
Proof. reflexivity. Qed.

Theorem canonical_deterministic : forall p q,
  signed_view (fields p) = signed_view (fields q) -> canonical p = canonical q.
Proof.
  intros p q H. unfold canonical. rewrite !payload_view, H. reflexivity.
Qed.

Theorem unsigned_fields_irrelevant : forall f u v,
  canonical (Pcs f u) = canonical (Pcs f v).
Proof. reflexivity. Qed.

(** *** Different signed values give different payloads *)

Lemma hex_round_trip : forall d, d < 16 ->
  (if hexd d <? 58 then hexd d - 48 else hexd d - 87) = d.
Proof.
  intros d Hd. unfold hexd.
  destruct (d <? 10) eqn:E; [apply N.ltb_lt in E | apply N.ltb_ge in E].
  - replace (48 + d <? 58) with true by (symmetry; apply N.ltb_lt; lia). lia.
  - replace (87 + d <? 58) with false by (symmetry; apply N.ltb_ge; lia). lia.
Qed.

Definition unhex (b : N) : N := if b <? 58 then b - 48 else b - 87.

Definition hex4 (a b c d : N) : N := 4096 * unhex a + 256 * unhex b + 16 * unhex c + unhex d.

(** Reads one escaped code point off the front of [l]. *)
Definition dec1 (l : list N) : option (N * list N) :=
  match l with
  | [] => None
  | b0 :: l1 =>
      if b0 =? 92 then
        match l1 with
        | [] => None
        | b1 :: l2 =>
            if b1 =? 117 then
              match l2 with
              | a :: b :: c :: d :: l3 =>
                  let v := hex4 a b c d in
                  if (55296 <=? v) && (v <=? 56319) then
                    match l3 with
                    | _ :: _ :: a' :: b' :: c' :: d' :: l4 =>
                        Some (65536 + (v - 55296) * 1024 + (hex4 a' b' c' d' - 56320), l4)
                    | _ => None
                    end
                  else Some (v, l3)
              | _ => None
              end
            else if b1 =? 110 then Some (10, l2)
            else if b1 =? 114 then Some (13, l2)
            else if b1 =? 116 then Some (9, l2)
            else if b1 =? 98 then Some (8, l2)
            else if b1 =? 102 then Some (12, l2)
            else Some (b1, l2)
        end
      else Some (b0, l1)
  end.

Lemma digits16 : forall x, x < 65536 ->
  4096 * (x / 4096 mod 16) + 256 * (x / 256 mod 16) + 16 * (x / 16 mod 16) + x mod 16 = x.
Proof.
  intros x Hx.
  pose proof (N.div_mod x 4096 ltac:(lia)) as E1.
  pose proof (N.mod_lt x 4096 ltac:(lia)) as L1.
  pose proof (N.div_mod (x mod 4096) 256 ltac:(lia)) as E2.
  pose proof (N.mod_lt (x mod 4096) 256 ltac:(lia)) as L2.
  pose proof (N.div_mod (x mod 4096 mod 256) 16 ltac:(lia)) as E3.
  pose proof (N.mod_lt (x mod 4096 mod 256) 16 ltac:(lia)) as L3.
  set (a := x / 4096) in *. set (r := x mod 4096) in *.
  set (b := r / 256) in *. set (r2 := r mod 256) in *.
  set (c := r2 / 16) in *. set (d := r2 mod 16) in *.
  assert (Ha : a < 16) by nia.
  assert (Hb : b < 16) by nia.
  assert (D1 : x / 256 = 16 * a + b)
    by (symmetry; apply N.div_unique with (r := r2); lia).
  assert (D2 : x / 16 = 256 * a + 16 * b + c)
    by (symmetry; apply N.div_unique with (r := d); lia).
  assert (M0 : a mod 16 = a) by (apply N.mod_small; lia).
  assert (M1 : (16 * a + b) mod 16 = b)
    by (symmetry; apply N.mod_unique with (q := a); lia).
  assert (M2 : (256 * a + 16 * b + c) mod 16 = c)
    by (symmetry; apply N.mod_unique with (q := 16 * a + b); lia).
  assert (M3 : x mod 16 = d)
    by (symmetry; apply N.mod_unique with (q := 256 * a + 16 * b + c); lia).
  rewrite D1, D2, M0, M1, M2, M3. lia.
Qed.

Lemma hex4_u4 : forall x, x < 65536 ->
  hex4 (hexd (x / 4096 mod 16)) (hexd (x / 256 mod 16)) (hexd (x / 16 mod 16))
       (hexd (x mod 16)) = x.
Proof.
  intros x Hx. unfold hex4, unhex.
  rewrite !hex_round_trip by (apply N.mod_lt; lia).
  apply digits16; assumption.
Qed.

Lemma dec1_u4 : forall v x, v < 65536 -> ~ (55296 <= v <= 56319) ->
  dec1 (u4 v ++ x) = Some (v, x).
Proof.
  intros v x Hv Hs. unfold u4.
  remember (hexd (v / 4096 mod 16)) as h1. remember (hexd (v / 256 mod 16)) as h2.
  remember (hexd (v / 16 mod 16)) as h3. remember (hexd (v mod 16)) as h4.
  assert (H4 : hex4 h1 h2 h3 h4 = v) by (subst; apply hex4_u4; assumption).
  cbn [app dec1]. change (92 =? 92) with true. change (117 =? 117) with true.
  cbv beta iota zeta. rewrite H4.
  destruct (55296 <=? v) eqn:E1; [apply N.leb_le in E1 | reflexivity].
  destruct (v <=? 56319) eqn:E2; [apply N.leb_le in E2; lia | reflexivity].
Qed.

Lemma dec1_pair : forall c x, 65536 <= c -> c < 1114112 ->
  dec1 (u4 (55296 + (c - 65536) / 1024) ++ u4 (56320 + (c - 65536) mod 1024) ++ x)
  = Some (c, x).
Proof.
  intros c x H1 H2.
  pose proof (N.div_mod (c - 65536) 1024 ltac:(lia)) as E.
  pose proof (N.mod_lt (c - 65536) 1024 ltac:(lia)) as L.
  remember ((c - 65536) / 1024) as q. remember ((c - 65536) mod 1024) as m.
  assert (Hq : q < 1024) by lia.
  unfold u4.
  remember (55296 + q) as hi. remember (56320 + m) as lo.
  remember (hexd (hi / 4096 mod 16)) as h1. remember (hexd (hi / 256 mod 16)) as h2.
  remember (hexd (hi / 16 mod 16)) as h3. remember (hexd (hi mod 16)) as h4.
  remember (hexd (lo / 4096 mod 16)) as l1. remember (hexd (lo / 256 mod 16)) as l2.
  remember (hexd (lo / 16 mod 16)) as l3. remember (hexd (lo mod 16)) as l4.
  assert (Hh : hex4 h1 h2 h3 h4 = hi) by (subst h1 h2 h3 h4; apply hex4_u4; lia).
  assert (Hl : hex4 l1 l2 l3 l4 = lo) by (subst l1 l2 l3 l4; apply hex4_u4; lia).
  cbn [app dec1]. change (92 =? 92) with true. change (117 =? 117) with true.
  cbv beta iota zeta. rewrite Hh, Hl.
  replace ((55296 <=? hi) && (hi <=? 56319)) with true
    by (symmetry; apply andb_true_intro; split; apply N.leb_le; lia).
  f_equal. f_equal. lia.
Qed.

Lemma dec1_plain : forall c x, c <> 92 -> dec1 (c :: x) = Some (c, x).
Proof.
  intros c x H. unfold dec1. destruct (N.eqb_spec c 92); [contradiction | reflexivity].
Qed.

Lemma dec1_esc : forall c x, scalar c -> dec1 (esc c ++ x) = Some (c, x).
Proof.
  intros c x [Hmax Hsur]. unfold esc.
  destruct (N.eqb_spec c 34); [subst; reflexivity |].
  destruct (N.eqb_spec c 92); [subst; reflexivity |].
  destruct (N.eqb_spec c 10); [subst; reflexivity |].
  destruct (N.eqb_spec c 13); [subst; reflexivity |].
  destruct (N.eqb_spec c 9); [subst; reflexivity |].
  destruct (N.eqb_spec c 8); [subst; reflexivity |].
  destruct (N.eqb_spec c 12); [subst; reflexivity |].
  destruct ((32 <=? c) && (c <=? 126)).
  - change ([c] ++ x) with (c :: x). apply dec1_plain. assumption.
  - destruct (N.ltb_spec c 65536).
    + apply dec1_u4; lia.
    + rewrite <- app_assoc. apply dec1_pair; lia.
Qed.

Lemma esc_prefix : forall c d x y, scalar c -> scalar d ->
  esc c ++ x = esc d ++ y -> c = d /\ x = y.
Proof.
  intros c d x y Hc Hd H.
  apply (f_equal dec1) in H. rewrite !dec1_esc in H by assumption.
  injection H as H1 H2. auto.
Qed.

(** No escape starts with a quote: the quote that ends a string is never part of it. *)
Lemma esc_not_quote : forall c l, esc c = 34 :: l -> False.
Proof.
  intros c l. unfold esc.
  destruct (N.eqb_spec c 34); [discriminate |].
  destruct (c =? 92); [discriminate |].
  destruct (c =? 10); [discriminate |].
  destruct (c =? 13); [discriminate |].
  destruct (c =? 9); [discriminate |].
  destruct (c =? 8); [discriminate |].
  destruct (c =? 12); [discriminate |].
  destruct ((32 <=? c) && (c <=? 126)).
  - intro H. injection H as H0 _. contradiction.
  - destruct (c <? 65536); unfold u4; discriminate.
Qed.

Lemma esc_nonempty : forall c, exists b l, esc c = b :: l.
Proof.
  intro c. unfold esc.
  destruct (c =? 34); [eauto |].
  destruct (c =? 92); [eauto |].
  destruct (c =? 10); [eauto |].
  destruct (c =? 13); [eauto |].
  destruct (c =? 9); [eauto |].
  destruct (c =? 8); [eauto |].
  destruct (c =? 12); [eauto |].
  destruct ((32 <=? c) && (c <=? 126)); [eauto |].
  destruct (c <? 65536); unfold u4; do 2 eexists; reflexivity.
Qed.

Lemma esc_str_quote : forall s t x y, Forall scalar s -> Forall scalar t ->
  esc_str s ++ 34 :: x = esc_str t ++ 34 :: y -> s = t /\ x = y.
Proof.
  induction s as [| c s IH]; destruct t as [| d t]; simpl; intros x y Hs Ht H.
  - injection H as H. auto.
  - exfalso. destruct (esc_nonempty d) as [b [l E]]. rewrite E in H. simpl in H.
    injection H as H0 _. subst b. apply (esc_not_quote d l E).
  - exfalso. destruct (esc_nonempty c) as [b [l E]]. rewrite E in H. simpl in H.
    injection H as H0 _. subst b. apply (esc_not_quote c l E).
  - inversion Hs; inversion Ht; subst.
    rewrite <- !app_assoc in H.
    destruct (esc_prefix c d _ _ ltac:(assumption) ltac:(assumption) H) as [-> H'].
    destruct (IH t x y ltac:(assumption) ltac:(assumption) H') as [-> ->]. auto.
Qed.

Lemma string_inj : forall s t x y, Forall scalar s -> Forall scalar t ->
  json_string s ++ x = json_string t ++ y -> s = t /\ x = y.
Proof.
  intros s t x y Hs Ht H. unfold json_string in H. simpl in H.
  injection H as H. rewrite <- !app_assoc in H. simpl in H.
  apply esc_str_quote; assumption.
Qed.

(** A field ended by a comma it cannot contain. *)
Lemma comma_inj : forall u v x y, ~ In 44 u -> ~ In 44 v ->
  u ++ 44 :: x = v ++ 44 :: y -> u = v /\ x = y.
Proof.
  induction u as [| a u IH]; destruct v as [| b v]; simpl; intros x y Hu Hv H.
  - injection H as H. auto.
  - injection H as H0 _. subst b. exfalso. apply Hv. left. reflexivity.
  - injection H as H0 _. subst a. exfalso. apply Hu. left. reflexivity.
  - injection H as H0 H. subst b.
    destruct (IH v x y ltac:(tauto) ltac:(tauto) H) as [-> ->]. auto.
Qed.

Lemma uint_no_comma : forall u, ~ In 44 (uint_bytes u).
Proof.
  induction u; simpl; try tauto; intros [H | H]; try discriminate; auto.
Qed.

Lemma uint_bytes_inj : forall u v, uint_bytes u = uint_bytes v -> u = v.
Proof.
  induction u; destruct v; simpl; intro H; try discriminate; auto;
    injection H as H; f_equal; auto.
Qed.

Lemma int_inj : forall n m x y,
  int_bytes n ++ 44 :: x = int_bytes m ++ 44 :: y -> n = m /\ x = y.
Proof.
  intros n m x y H. unfold int_bytes in H.
  apply comma_inj in H; [| apply uint_no_comma | apply uint_no_comma].
  destruct H as [H ->]. split; [| reflexivity].
  apply uint_bytes_inj in H.
  rewrite <- (DecimalNat.Unsigned.of_to n), <- (DecimalNat.Unsigned.of_to m), H.
  reflexivity.
Qed.

Lemma number_inj : forall a b x y, in_range a -> in_range b ->
  number a ++ 44 :: x = number b ++ 44 :: y ->
  nanos (round9 a) = nanos (round9 b) /\ x = y.
Proof.
  intros a b x y Ha Hb H. unfold number, num_text, in_range in *.
  destruct (nanos (round9 a)) as [sa na]. destruct (nanos (round9 b)) as [sb nb].
  simpl in Ha, Hb.
  apply comma_inj in H; [| apply repr_no_comma | apply repr_no_comma].
  destruct H as [H ->].
  destruct (repr_injective sa na sb nb Ha Hb H) as [-> ->]. auto.
Qed.

(** The same, for a field followed by the next key (which starts with a comma). *)
Lemma number_key_inj : forall a b k x y, in_range a -> in_range b ->
  number a ++ lit (String "," k) ++ x = number b ++ lit (String "," k) ++ y ->
  nanos (round9 a) = nanos (round9 b) /\ x = y.
Proof.
  intros a b k x y Ha Hb H.
  destruct (number_inj a b (lit k ++ x) (lit k ++ y) Ha Hb H) as [E H'].
  split; [exact E | apply app_inv_head in H'; exact H'].
Qed.

Lemma int_key_inj : forall n m k x y,
  int_bytes n ++ lit (String "," k) ++ x = int_bytes m ++ lit (String "," k) ++ y ->
  n = m /\ x = y.
Proof.
  intros n m k x y H.
  destruct (int_inj n m (lit k ++ x) (lit k ++ y) H) as [E H'].
  split; [exact E | apply app_inv_head in H'; exact H'].
Qed.

Lemma string_key_inj : forall s t k x y, Forall scalar s -> Forall scalar t ->
  json_string s ++ lit k ++ x = json_string t ++ lit k ++ y -> s = t /\ x = y.
Proof.
  intros s t k x y Hs Ht H.
  destruct (string_inj s t (lit k ++ x) (lit k ++ y) Hs Ht H) as [E H'].
  split; [exact E | apply app_inv_head in H'; exact H'].
Qed.

Theorem canonical_injective_on_signed_fields : forall p q,
  well_formed p -> well_formed q -> canonical p = canonical q ->
  signed_view (fields p) = signed_view (fields q).
Proof.
  intros [f u] [g v] Hf Hg H.
  unfold well_formed, canonical, payload in *. cbn [fields] in *.
  destruct Hf as (Fp & Fm & Fs & Fd & Fb & Fc & Fr).
  destruct Hg as (Gp & Gm & Gs & Gd & Gb & Gc & Gr).
  apply app_inv_head in H.
  apply number_key_inj in H as [E1 H]; [| assumption | assumption].
  apply number_key_inj in H as [E2 H]; [| assumption | assumption].
  apply number_key_inj in H as [E3 H]; [| assumption | assumption].
  apply int_key_inj in H as [E4 H].
  apply string_key_inj in H as [E5 H]; [| assumption | assumption].
  apply string_key_inj in H as [E6 H]; [| assumption | assumption].
  apply number_key_inj in H as [E7 H]; [| assumption | assumption].
  apply string_inj in H as [E8 _]; [| assumption | assumption].
  unfold signed_view. rewrite E1, E2, E3, E4, E5, E6, E7, E8. reflexivity.
Qed.

(** *** A valid signature commits to the signed fields *)

Theorem signature_soundness : forall mode key p q,
  well_formed p -> well_formed q ->
  valid_signature mode key p (sign mode key q) ->
  signed_view (fields p) = signed_view (fields q).
Proof.
  intros mode key p q Hp Hq H. unfold valid_signature, sign, mac in H.
  apply canonical_injective_on_signed_fields; [assumption | assumption |].
  destruct mode.
  - apply hmac_collision_resistant, sha256_collision_resistant in H. auto.
  - apply hmac_collision_resistant in H. auto.
Qed.

Print Assumptions signature_soundness.

End Signing.

Print Assumptions signature_soundness.
