{#
    The model's view of an application: sk_id_curr, month and target, then only model features
    (categorical features as text, numeric ones as integer or double). The model trains on every
    column but the first three, so a column added here becomes a feature of the next model.
#}
{{ config(materialized='view') }}

{%- set flags = ['is_days_employed_sentinel', 'is_code_gender_xna', 'is_organization_type_xna'] -%}
{%- set engineered_features = {
    'credit_income_ratio': 'float',
    'annuity_income_ratio': 'float',
    'annuity_credit_ratio': 'float',
    'goods_credit_ratio': 'float',
    'income_per_family_member': 'float',
    'credit_goods_difference': 'float',
    'age_years': 'float',
    'employment_years': 'float',
    'employment_age_ratio': 'float',
    'id_publish_age_ratio': 'float',
    'phone_change_age_ratio': 'float',
    'ext_source_count': 'int',
    'ext_source_min': 'float',
    'ext_source_max': 'float',
    'ext_source_mean': 'float',
    'ext_source_std': 'float',
    'ext_source_product': 'float',
    'ext_source_2_3_product': 'float',
    'missing_field_count': 'int',
} -%}

with

derived_features as (

    select * from {{ ref('int_application_features_derived') }}

),

final as (

    select
        cast(sk_id_curr as {{ dbt.type_bigint() }}) as sk_id_curr,
        cast(month as {{ dbt.type_string() }}) as month,
        cast(target as {{ dbt.type_int() }}) as target,
        {%- for column, kind in applicant_columns().items() %}
            cast({{ column }} as {{ feature_type(kind) }}) as {{ column }},
        {%- endfor %}
        {%- for flag in flags %}
            cast(case when {{ flag }} then 1 else 0 end as {{ dbt.type_int() }}) as {{ flag }},
        {%- endfor %}
        {%- for feature, kind in engineered_features.items() %}
            cast({{ feature }} as {{ feature_type(kind) }}) as {{ feature }},
        {%- endfor %}
        cast(document_flag_count as {{ dbt.type_int() }}) as document_flag_count
    from derived_features

)

select * from final
