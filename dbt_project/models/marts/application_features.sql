{#
    The model's view of an application: sk_id_curr, month and target, then only model features
    (categorical features as text, numeric ones as integer or double). The model trains on every
    column but the first three, so a column added here becomes a feature of the next model.
#}
{{ config(materialized='view') }}

{%- set flags = ['is_days_employed_sentinel', 'is_code_gender_xna', 'is_organization_type_xna'] -%}
{%- set engineered_features = {
    'credit_income_ratio': 'double',
    'annuity_income_ratio': 'double',
    'annuity_credit_ratio': 'double',
    'goods_credit_ratio': 'double',
    'age_years': 'double',
    'employment_years': 'double',
    'employment_age_ratio': 'double',
    'ext_source_count': 'int',
    'ext_source_min': 'double',
    'ext_source_max': 'double',
    'ext_source_mean': 'double',
    'ext_source_std': 'double',
    'ext_source_product': 'double',
    'missing_field_count': 'int',
    'document_flag_count': 'int',
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
            {%- if kind == 'str' %}
                cast({{ column }} as {{ dbt.type_string() }}) as {{ column }},
            {%- elif kind == 'int' %}
                cast({{ column }} as {{ dbt.type_int() }}) as {{ column }},
            {%- else %}
                cast({{ column }} as {{ type_double() }}) as {{ column }},
            {%- endif %}
        {%- endfor %}
        {%- for flag in flags %}
            cast(case when {{ flag }} then 1 else 0 end as {{ dbt.type_int() }}) as {{ flag }},
        {%- endfor %}
        {%- for feature, kind in engineered_features.items() %}
            {%- if kind == 'int' %}
                cast({{ feature }} as {{ dbt.type_int() }}) as {{ feature }}
            {%- else %}
                cast({{ feature }} as {{ type_double() }}) as {{ feature }}
            {%- endif %}
            {{- ',' if not loop.last }}
        {%- endfor %}
    from derived_features

)

select * from final
